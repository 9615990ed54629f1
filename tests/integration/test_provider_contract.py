"""The provider contract: every adapter operation against the emulator, for every surface.

Parametrized over the providers (OpenAI, Azure legacy 2024-10-21, Azure v1, Anthropic) and
two ways of reaching the emulator: the async adapter with the app mounted in-process through
``httpx.ASGITransport``, and the sync adapter over a real port (``EmulatorServer``). The
test bodies are written once; the sync adapter is wrapped in awaitables for them. Batch
tests go through :meth:`Rig.submit` and :meth:`Rig.outcomes`, which hide the one real
difference: OpenAI and Azure upload a file and read output/error files, Anthropic sends the
requests inline and reads one results file. File tests run on the file providers only.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchyard.config import HttpSettings
from batchyard.emulator import Emulator, EmulatorConfig, EmulatorServer, create_app
from batchyard.errors import (
    ProviderAuthError,
    ProviderNotFoundError,
    ProviderRejectedError,
    ProviderTransientError,
)
from batchyard.providers import (
    ProviderConfig,
    build_anthropic_provider,
    build_async_anthropic_provider,
    build_async_provider,
    build_provider,
)
from batchyard.providers.base import ProviderBatch

pytestmark = pytest.mark.anyio

KEY = "sk-contract"
FAST_HTTP = HttpSettings(max_attempts=4, backoff_initial=0.001, backoff_max=0.01,
                         retry_total_seconds=10.0, max_retry_after=5.0)
FLAVORS = {
    "openai": ("openai", "/v1", None),
    "azure-legacy": ("azure", "", "2024-10-21"),
    "azure-v1": ("azure", "", None),
    "anthropic": ("anthropic", "", None),
}
FILE_FLAVORS = [name for name in FLAVORS if name != "anthropic"]
TERMINAL = {"completed", "failed", "cancelled", "expired"}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


class AwaitableSync:
    """The sync adapter seen through the async adapter's shape (tests only)."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._provider, name)
        if name in ("list_files", "list_batches"):
            async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                for item in method(*args, **kwargs):
                    yield item
            return iterate

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)
        return call


@dataclass
class Rig:
    """One adapter wired to one emulator."""

    provider: Any
    emulator: Emulator
    flavor: str

    tmp: Path

    @property
    def azure(self) -> bool:
        return self.flavor.startswith("azure")

    @property
    def anthropic(self) -> bool:
        return self.flavor == "anthropic"

    async def submit(self, lines: list[dict[str, Any]],
                     metadata: dict[str, str] | None = None) -> ProviderBatch:
        """Create a batch of chat requests (``chat_line`` dicts) the provider's way."""
        path = self.tmp / f"submit-{time.monotonic_ns()}.jsonl"
        if self.anthropic:
            path.write_text("".join(json.dumps(anthropic_request(line)) + "\n"
                                    for line in lines))
            return await self.provider.create_batch(path)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        uploaded = await self.provider.upload_file(path)
        return await self.provider.create_batch(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", metadata=metadata)

    async def outcomes(self, batch: ProviderBatch) -> dict[str, bool]:
        """custom_id -> succeeded, from the output and error files or the results file."""
        if self.anthropic:
            sink = io.BytesIO()
            await self.provider.download_results(batch.id, sink, batch.results_url)
            return {item["custom_id"]: item["result"]["type"] == "succeeded"
                    for item in map(json.loads, sink.getvalue().splitlines())}
        found: dict[str, bool] = {}
        for file_id, ok in ((batch.output_file_id, True), (batch.error_file_id, False)):
            if file_id:
                for line in (await content(self, file_id)).splitlines():
                    found[json.loads(line)["custom_id"]] = ok
        return found


def anthropic_request(line: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic twin of an OpenAI chat line (the contract's only translation)."""
    params = {"model": "claude-sonnet-4-5", "max_tokens": 64,
              **{k: v for k, v in line["body"].items() if k != "model"}}
    return {"custom_id": line["custom_id"], "params": params}


def build_sync(flavor: str, config: ProviderConfig) -> Any:
    if flavor == "anthropic":
        return build_anthropic_provider(config, FAST_HTTP)
    return build_provider(config, FAST_HTTP)


def build_async(flavor: str, config: ProviderConfig, **kwargs: Any) -> Any:
    if flavor == "anthropic":
        return build_async_anthropic_provider(config, FAST_HTTP, **kwargs)
    return build_async_provider(config, FAST_HTTP, **kwargs)


def provider_config(flavor: str, base_url: str, key: str = KEY) -> ProviderConfig:
    kind, suffix, version = FLAVORS[flavor]
    return ProviderConfig(kind=kind, api_key=key, api_base=base_url + suffix,
                          api_version=version)


def emulator_config(flavor: str, **overrides: Any) -> EmulatorConfig:
    knobs: dict[str, Any] = {"flavor": FLAVORS[flavor][0], "api_keys": (KEY,),
                             "validation_delay": 0.05, "finalize_delay": 0.05,
                             "cancel_grace": 0.05, **overrides}
    return EmulatorConfig(**knobs)


@pytest.fixture(params=["asgi-async", "port-sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(FLAVORS))
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=FILE_FLAVORS)
def file_flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def open_rig(flavor: str, mode: str, tmp: Path) -> AsyncIterator[Rig]:
    config = emulator_config(flavor)
    if mode == "asgi-async":
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        provider = build_async(flavor, provider_config(flavor, "http://emulator.test"),
                               transport=transport)
        try:
            yield Rig(provider, app.state.emulator, flavor, tmp)
        finally:
            await provider.aclose()
            app.state.emulator.close()
        return
    with EmulatorServer(config) as server, \
            build_sync(flavor, provider_config(flavor, server.base_url)) as sync:
        yield Rig(AwaitableSync(sync), server.emulator, flavor, tmp)


@pytest.fixture()
async def rig(flavor: str, mode: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async for opened in open_rig(flavor, mode, tmp_path):
        yield opened


@pytest.fixture()
async def file_rig(file_flavor: str, mode: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async for opened in open_rig(file_flavor, mode, tmp_path):
        yield opened


def chat(custom_id: str, text: str = "Hello", **extra: Any) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": body}


def chat_line(custom_id: str, text: str = "Hello", **extra: Any) -> str:
    return json.dumps(chat(custom_id, text, **extra))


@pytest.fixture()
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    def write(lines: list[str], name: str = "input.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(line + "\n" for line in lines))
        return path
    return write


async def wait_for(rig: Rig, batch_id: str, statuses: set[str] = TERMINAL,
                   timeout: float = 20.0) -> ProviderBatch:
    deadline = time.monotonic() + timeout
    while True:
        batch = await rig.provider.retrieve_batch(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}"
        await anyio.sleep(0.02)


async def content(rig: Rig, file_id: str) -> bytes:
    sink = io.BytesIO()
    written = await rig.provider.download_file(file_id, sink)
    assert written == len(sink.getvalue())
    return sink.getvalue()


async def test_file_round_trip(file_rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    rig = file_rig
    path = write_jsonl([chat_line("a"), chat_line("b")], name="part_42.jsonl")
    uploaded = await rig.provider.upload_file(path)
    assert uploaded.id.startswith("file-")
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == (
        "part_42.jsonl", "batch", path.stat().st_size)
    assert uploaded.created_at is not None and uploaded.created_at > 1_700_000_000
    fetched = await rig.provider.retrieve_file(uploaded.id)
    assert (fetched.id, fetched.bytes) == (uploaded.id, uploaded.bytes)
    assert uploaded.id in [f.id async for f in rig.provider.list_files(purpose="batch")]
    assert await content(rig, uploaded.id) == path.read_bytes()
    assert rig.emulator.stats()["files_uploaded"] == 1
    assert await rig.provider.delete_file(uploaded.id) is True
    with pytest.raises(ProviderNotFoundError) as caught:
        await rig.provider.retrieve_file(uploaded.id)
    assert caught.value.status == 404 and caught.value.request_id


async def test_upload_of_an_open_file_with_a_chosen_name(
        file_rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([chat_line("a")], name="whatever.bin")
    with path.open("rb") as handle:
        uploaded = await file_rig.provider.upload_file(handle, filename="part_7.jsonl")
    assert uploaded.filename == "part_7.jsonl"
    assert [f["filename"] for f in file_rig.emulator.stats()["files"]] == ["part_7.jsonl"]


async def test_non_jsonl_batch_upload_is_rejected(
        file_rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([chat_line("a")], name="input.txt")
    with pytest.raises(ProviderRejectedError) as caught:
        await file_rig.provider.upload_file(path)
    assert caught.value.status == 400 and ".jsonl" in caught.value.message
    assert caught.value.request_id


async def test_batch_runs_to_completion_with_output(rig: Rig) -> None:
    lines = [chat(f"req-{n}", f"question {n}") for n in range(3)]
    created = await rig.submit(lines, metadata={"batchyard_part_id": "part_1"})
    assert created.status == ("in_progress" if rig.anthropic else "validating")
    assert created.created_at is not None and created.expires_at is not None
    assert created.request_counts.completed == 0
    if not rig.anthropic:
        assert created.endpoint == "/v1/chat/completions" and created.input_file_id
        assert created.metadata == {"batchyard_part_id": "part_1"}
    done = await wait_for(rig, created.id)
    assert done.status == "completed" and done.completed_at is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (3, 3, 0)
    assert done.errors == ()
    assert await rig.outcomes(done) == {"req-0": True, "req-1": True, "req-2": True}
    if rig.anthropic:
        assert done.results_url and done.results_url.endswith(f"/{done.id}/results")
        assert done.output_file_id is None
    elif rig.azure:  # Azure always writes an error file, empty on success
        assert done.error_file_id is not None and await content(rig, done.error_file_id) == b""
    else:
        assert done.error_file_id is None and done.output_file_id is not None


async def test_failed_request_is_reported_as_failed(rig: Rig) -> None:
    batch = await rig.submit([chat("ok"), chat("bad", x_emulator={"status": 400})])
    done = await wait_for(rig, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert await rig.outcomes(done) == {"ok": True, "bad": False}


async def test_invalid_input_fails_validation_with_line_numbers(
        file_rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    rig = file_rig
    uploaded = await rig.provider.upload_file(write_jsonl([chat_line("a"), "{not json"]))
    batch = await rig.provider.create_batch(input_file_id=uploaded.id,
                                            endpoint="/v1/chat/completions")
    done = await wait_for(rig, batch.id)
    assert done.status == "failed"
    assert done.output_file_id is None
    assert [(e.code, e.line) for e in done.errors] == [("invalid_json_line", 2)]


async def test_cancel_goes_through_cancelling_to_cancelled(rig: Rig) -> None:
    rig.emulator.config.validation_delay = 1.0  # still queued when the cancel lands
    batch = await rig.submit([chat("a"), chat("b")])
    cancelling = await rig.provider.cancel_batch(batch.id)
    assert cancelling.status in {"cancelling", "cancelled"}
    assert cancelling.cancelling_at is not None
    done = await wait_for(rig, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    if rig.anthropic:  # every request comes back canceled
        assert done.request_counts.failed == 2
        assert await rig.outcomes(done) == {"a": False, "b": False}


async def test_list_batches_pages_through_everything(rig: Rig) -> None:
    created = [(await rig.submit([chat("a")])).id for _ in range(5)]
    listed = [b.id async for b in rig.provider.list_batches(page_size=2)]
    assert sorted(listed) == sorted(created) and len(listed) == len(set(listed))
    first = await rig.provider.list_batches_page(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    second = await rig.provider.list_batches_page(limit=2, after=first.data[-1].id)
    assert not {b.id for b in first.data} & {b.id for b in second.data}


async def test_unknown_ids_are_not_found(rig: Rig) -> None:
    with pytest.raises(ProviderNotFoundError) as caught:
        await rig.provider.retrieve_batch("batch_doesnotexist")
    assert caught.value.status == 404 and caught.value.code and caught.value.request_id
    if rig.anthropic:
        assert caught.value.code == "not_found_error"
        with pytest.raises(ProviderNotFoundError):
            await rig.provider.download_results("msgbatch_nope", io.BytesIO())
        return
    with pytest.raises(ProviderNotFoundError):
        await content(rig, "file-doesnotexist")
    with pytest.raises(ProviderNotFoundError):
        await rig.provider.create_batch(input_file_id="file-doesnotexist",
                                        endpoint="/v1/chat/completions")


async def test_rate_limits_and_server_errors_are_retried(rig: Rig) -> None:
    rig.emulator.set_faults(rate_limit_next=1, retry_after=0.01, server_error_next=1,
                            overloaded_next=1)
    assert (await rig.provider.list_batches_page(limit=5)).data == ()
    rig.emulator.set_faults(server_error_next=10)
    with pytest.raises(ProviderTransientError) as caught:
        await rig.provider.retrieve_batch("batch_x")
    assert caught.value.status == 500 and caught.value.request_id
    if rig.anthropic:
        assert caught.value.code == "api_error"


async def test_long_retry_after_is_returned_not_waited(rig: Rig) -> None:
    rig.emulator.set_faults(rate_limit_next=5, retry_after=60)
    with pytest.raises(ProviderTransientError) as caught:
        await rig.provider.retrieve_batch("batch_x")
    assert caught.value.status == 429 and caught.value.retry_after == 60


async def test_dropped_connection_is_retried(rig: Rig) -> None:
    batch = await rig.submit([chat("a")])
    rig.emulator.set_faults(drop_next=1)
    assert (await rig.provider.retrieve_batch(batch.id)).id == batch.id


async def test_wrong_key_is_an_auth_error(flavor: str) -> None:
    app = create_app(emulator_config(flavor))
    provider = build_async(flavor, provider_config(flavor, "http://emulator.test", key="nope"),
                           transport=httpx.ASGITransport(app=app))
    try:
        with pytest.raises(ProviderAuthError) as caught:
            await provider.retrieve_batch("batch_x")
        assert caught.value.status == 401
    finally:
        await provider.aclose()
        app.state.emulator.close()


async def test_anthropic_create_refused_for_its_envelope(mode: str, tmp_path: Path) -> None:
    async for rig in open_rig("anthropic", mode, tmp_path):
        with pytest.raises(ProviderRejectedError) as caught:
            await rig.submit([chat("same"), chat("same")])
        assert caught.value.status == 400 and caught.value.code == "invalid_request_error"
        assert "Duplicate custom_id" in caught.value.message and caught.value.request_id
        assert rig.emulator.stats()["batches_created"] == 0


async def test_anthropic_529_is_retried_and_delete_needs_an_ended_batch(
        mode: str, tmp_path: Path) -> None:
    async for rig in open_rig("anthropic", mode, tmp_path):
        rig.emulator.set_faults(overloaded_next=2, retry_after=0.01, fault_method="POST")
        batch = await rig.submit([chat(f"r{n}") for n in range(4)])
        assert rig.emulator.stats()["batches"][0]["request_count"] == 4
        rig.emulator.set_faults(overloaded_next=0, fault_method=None)
        done = await wait_for(rig, batch.id)
        assert await rig.provider.delete_batch(done.id) is True
        with pytest.raises(ProviderNotFoundError):
            await rig.provider.retrieve_batch(done.id)

"""The provider contract: every adapter operation against the emulator, for every surface.

Parametrized over three flavors (OpenAI, Azure legacy 2024-10-21, Azure v1) and two ways of
reaching the emulator: the async adapter with the app mounted in-process through
``httpx.ASGITransport``, and the sync adapter over a real port (``EmulatorServer``). The
test bodies are written once; the sync adapter is wrapped in awaitables for them.
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
from batchyard.providers import ProviderConfig, build_async_provider, build_provider
from batchyard.providers.base import ProviderBatch

pytestmark = pytest.mark.anyio

KEY = "sk-contract"
FAST_HTTP = HttpSettings(max_attempts=4, backoff_initial=0.001, backoff_max=0.01,
                         retry_total_seconds=10.0, max_retry_after=5.0)
FLAVORS = {
    "openai": ("openai", "/v1", None),
    "azure-legacy": ("azure", "", "2024-10-21"),
    "azure-v1": ("azure", "", None),
}
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

    @property
    def azure(self) -> bool:
        return self.flavor.startswith("azure")


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


@pytest.fixture()
async def rig(flavor: str, mode: str) -> AsyncIterator[Rig]:
    config = emulator_config(flavor)
    if mode == "asgi-async":
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        provider = build_async_provider(provider_config(flavor, "http://emulator.test"),
                                        FAST_HTTP, transport=transport)
        try:
            yield Rig(provider, app.state.emulator, flavor)
        finally:
            await provider.aclose()
            app.state.emulator.close()
        return
    with EmulatorServer(config) as server, \
            build_provider(provider_config(flavor, server.base_url), FAST_HTTP) as sync:
        yield Rig(AwaitableSync(sync), server.emulator, flavor)


def chat_line(custom_id: str, text: str = "Hello", **extra: Any) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
    return json.dumps({"custom_id": custom_id, "method": "POST",
                       "url": "/v1/chat/completions", "body": body})


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


async def test_file_round_trip(rig: Rig, write_jsonl: Callable[..., Path]) -> None:
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
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([chat_line("a")], name="whatever.bin")
    with path.open("rb") as handle:
        uploaded = await rig.provider.upload_file(handle, filename="part_7.jsonl")
    assert uploaded.filename == "part_7.jsonl"
    assert [f["filename"] for f in rig.emulator.stats()["files"]] == ["part_7.jsonl"]


async def test_non_jsonl_batch_upload_is_rejected(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([chat_line("a")], name="input.txt")
    with pytest.raises(ProviderRejectedError) as caught:
        await rig.provider.upload_file(path)
    assert caught.value.status == 400 and ".jsonl" in caught.value.message
    assert caught.value.request_id


async def test_batch_runs_to_completion_with_output(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    lines = [chat_line(f"req-{n}", f"question {n}") for n in range(3)]
    uploaded = await rig.provider.upload_file(write_jsonl(lines))
    created = await rig.provider.create_batch(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions",
        metadata={"batchyard_part_id": "part_1"})
    assert created.id.startswith("batch_") and created.status == "validating"
    assert (created.input_file_id, created.endpoint) == (uploaded.id, "/v1/chat/completions")
    assert created.metadata == {"batchyard_part_id": "part_1"}
    assert created.created_at is not None
    done = await wait_for(rig, created.id)
    assert done.status == "completed" and done.completed_at is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (3, 3, 0)
    assert done.output_file_id is not None and done.errors == ()
    output = [json.loads(line) for line in (await content(rig, done.output_file_id)).splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["req-0", "req-1", "req-2"]
    assert all(line["response"]["status_code"] == 200 for line in output)
    if rig.azure:  # Azure always writes an error file, empty on success
        assert done.error_file_id is not None and await content(rig, done.error_file_id) == b""
    else:
        assert done.error_file_id is None


async def test_failed_request_lands_in_the_error_file(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    lines = [chat_line("ok"), chat_line("bad", x_emulator={"status": 400})]
    uploaded = await rig.provider.upload_file(write_jsonl(lines))
    batch = await rig.provider.create_batch(input_file_id=uploaded.id,
                                            endpoint="/v1/chat/completions")
    done = await wait_for(rig, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert done.error_file_id is not None
    errors = [json.loads(line) for line in (await content(rig, done.error_file_id)).splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("bad", 400)]


async def test_invalid_input_fails_validation_with_line_numbers(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    uploaded = await rig.provider.upload_file(write_jsonl([chat_line("a"), "{not json"]))
    batch = await rig.provider.create_batch(input_file_id=uploaded.id,
                                            endpoint="/v1/chat/completions")
    done = await wait_for(rig, batch.id)
    assert done.status == "failed"
    assert done.output_file_id is None
    assert [(e.code, e.line) for e in done.errors] == [("invalid_json_line", 2)]


async def test_cancel_goes_through_cancelling_to_cancelled(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    rig.emulator.config.validation_delay = 1.0  # still validating when the cancel lands
    uploaded = await rig.provider.upload_file(write_jsonl([chat_line("a"), chat_line("b")]))
    batch = await rig.provider.create_batch(input_file_id=uploaded.id,
                                            endpoint="/v1/chat/completions")
    cancelling = await rig.provider.cancel_batch(batch.id)
    assert cancelling.status in {"cancelling", "cancelled"}
    assert cancelling.cancelling_at is not None
    done = await wait_for(rig, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None


async def test_list_batches_pages_through_everything(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    uploaded = await rig.provider.upload_file(write_jsonl([chat_line("a")]))
    created = [
        (await rig.provider.create_batch(input_file_id=uploaded.id,
                                         endpoint="/v1/chat/completions")).id
        for _ in range(5)]
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
    with pytest.raises(ProviderNotFoundError):
        await content(rig, "file-doesnotexist")
    with pytest.raises(ProviderNotFoundError):
        await rig.provider.create_batch(input_file_id="file-doesnotexist",
                                        endpoint="/v1/chat/completions")


async def test_rate_limits_and_server_errors_are_retried(rig: Rig) -> None:
    rig.emulator.set_faults(rate_limit_next=1, retry_after=0.01, server_error_next=2)
    assert [f async for f in rig.provider.list_files()] == []
    rig.emulator.set_faults(server_error_next=10)
    with pytest.raises(ProviderTransientError) as caught:
        await rig.provider.retrieve_batch("batch_x")
    assert caught.value.status == 500 and caught.value.request_id


async def test_long_retry_after_is_returned_not_waited(rig: Rig) -> None:
    rig.emulator.set_faults(rate_limit_next=5, retry_after=60)
    with pytest.raises(ProviderTransientError) as caught:
        await rig.provider.retrieve_batch("batch_x")
    assert caught.value.status == 429 and caught.value.retry_after == 60


async def test_dropped_connection_is_retried(
        rig: Rig, write_jsonl: Callable[..., Path]) -> None:
    uploaded = await rig.provider.upload_file(write_jsonl([chat_line("a")]))
    rig.emulator.set_faults(drop_next=1)
    assert (await rig.provider.retrieve_file(uploaded.id)).id == uploaded.id


async def test_wrong_key_is_an_auth_error(flavor: str) -> None:
    app = create_app(emulator_config(flavor))
    provider = build_async_provider(provider_config(flavor, "http://emulator.test", key="nope"),
                                    FAST_HTTP, transport=httpx.ASGITransport(app=app))
    try:
        with pytest.raises(ProviderAuthError) as caught:
            await provider.retrieve_batch("batch_x")
        assert caught.value.status == 401
    finally:
        await provider.aclose()
        app.state.emulator.close()

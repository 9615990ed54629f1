"""The SDK (``batchyard.create_file`` ...) against both emulator flavors, sync and async."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import batchyard
from batchyard.config import HttpSettings, Settings
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.errors import ConfigError, InvalidInputError, ProviderNotFoundError

KEY = "sk-sdk"
TERMINAL = {"completed", "failed", "cancelled", "expired"}
# provider name -> (emulator flavor, api_base suffix, api_version)
SURFACES = {
    "openai": ("openai", "/v1", None),
    "azure-legacy": ("azure", "", "2024-10-21"),
    "azure-v1": ("azure", "", "v1"),
}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, EmulatorServer]]:
    started: dict[str, EmulatorServer] = {}
    try:
        for flavor in ("openai", "azure"):
            config = EmulatorConfig(flavor=flavor, api_keys=(KEY,), validation_delay=0.3,
                                    finalize_delay=0.02, cancel_grace=0.02)
            started[flavor] = EmulatorServer(config).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(params=list(SURFACES))
def options(request: pytest.FixtureRequest, servers: dict[str, EmulatorServer]
            ) -> dict[str, Any]:
    """Keyword arguments for every SDK call on one provider surface."""
    flavor, suffix, version = SURFACES[request.param]
    fast = Settings(http=HttpSettings(max_attempts=2, backoff_initial=0.01))
    found: dict[str, Any] = {"custom_llm_provider": flavor, "api_key": KEY,
                             "api_base": servers[flavor].base_url + suffix, "settings": fast}
    if version:
        found["api_version"] = version
    return found


@pytest.fixture()
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "openai_batch_completions.jsonl"
    lines = [{"custom_id": f"task-{n}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": f"question {n}"}]}}
             for n in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_sdk_sync_flow(options: dict[str, Any], jsonl: Path) -> None:
    with jsonl.open("rb") as handle:
        file_obj = batchyard.create_file(file=handle, purpose="batch", **options)
    assert (file_obj.object, file_obj.purpose, file_obj.bytes) == (
        "file", "batch", jsonl.stat().st_size)
    assert file_obj.filename == jsonl.name
    assert batchyard.file_retrieve(file_id=file_obj.id, **options).id == file_obj.id
    assert file_obj.id in [f.id for f in batchyard.file_list(purpose="batch", **options).data]

    batch = batchyard.create_batch(completion_window="24h", endpoint="/v1/chat/completions",
                                   input_file_id=file_obj.id, metadata={"key1": "value1"},
                                   **options)
    assert (batch.object, batch.status, batch.metadata) == (
        "batch", "validating", {"key1": "value1"})
    other = batchyard.create_batch(input_file_id=file_obj.id, **options)
    cancelled = batchyard.cancel_batch(batch_id=other.id, **options)
    assert cancelled.status in {"cancelling", "cancelled"}

    done = _wait(lambda: batchyard.retrieve_batch(batch_id=batch.id, **options))
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
    output = batchyard.file_content(file_id=done.output_file_id or "", **options)
    assert sorted(line["custom_id"] for line in output.json_lines()) == [
        "task-0", "task-1", "task-2"]
    assert len(list(output)) == 3 and output.text.count("\n") == 3
    source = batchyard.file_content(file_id=file_obj.id, **options)
    assert source.content == jsonl.read_bytes()

    first = batchyard.list_batches(limit=1, **options)
    assert len(first.data) == 1 and first.has_more is True and first.object == "list"
    rest = batchyard.list_batches(after=first.data[0].id, limit=100, **options)
    assert {first.data[0].id, *(b.id for b in rest.data)} >= {batch.id, other.id}

    assert batchyard.file_delete(file_id=file_obj.id, **options).deleted is True
    with pytest.raises(ProviderNotFoundError):
        batchyard.file_retrieve(file_id=file_obj.id, **options)


@pytest.mark.anyio
async def test_sdk_async_flow(options: dict[str, Any], jsonl: Path) -> None:
    file_obj = await batchyard.acreate_file(file=jsonl, purpose="batch", **options)
    assert (await batchyard.afile_retrieve(file_id=file_obj.id, **options)).bytes == \
        jsonl.stat().st_size
    listed = await batchyard.afile_list(**options)
    assert file_obj.id in [f.id for f in listed.data]

    batch = await batchyard.acreate_batch(completion_window="24h",
                                          endpoint="/v1/chat/completions",
                                          input_file_id=file_obj.id, **options)
    other = await batchyard.acreate_batch(input_file_id=file_obj.id, **options)
    assert (await batchyard.acancel_batch(batch_id=other.id, **options)).cancelling_at

    deadline = time.monotonic() + 20
    while (done := await batchyard.aretrieve_batch(batch_id=batch.id, **options)).status \
            not in TERMINAL:
        assert time.monotonic() < deadline
        await anyio.sleep(0.05)
    assert done.status == "completed" and done.output_file_id
    output = await batchyard.afile_content(file_id=done.output_file_id, **options)
    assert len(output.json_lines()) == 3

    page = await batchyard.alist_batches(limit=1, **options)
    assert len(page.data) == 1 and page.has_more is True
    assert (await batchyard.afile_delete(file_id=file_obj.id, **options)).deleted is True


def test_results_serialise_and_round_trip(options: dict[str, Any], jsonl: Path) -> None:
    file_obj = batchyard.create_file(file=str(jsonl), **options)
    batch = batchyard.create_batch(input_file_id=file_obj.id, **options)
    dumped = batch.model_dump()
    assert dumped["id"] == batch.id and dumped["request_counts"] is not None
    assert batchyard.Batch.model_validate_json(json.dumps(dumped)) == batch
    assert batchyard.FileObject.model_validate(file_obj.model_dump()) == file_obj


def test_env_supplies_openai_credentials(monkeypatch: pytest.MonkeyPatch,
                                         servers: dict[str, EmulatorServer],
                                         jsonl: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", servers["openai"].base_url + "/v1")
    file_obj = batchyard.create_file(file=jsonl.read_bytes(), purpose="batch",
                                     custom_llm_provider="openai")
    assert file_obj.bytes == jsonl.stat().st_size


def test_env_supplies_azure_credentials(monkeypatch: pytest.MonkeyPatch,
                                        servers: dict[str, EmulatorServer]) -> None:
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    monkeypatch.setenv("AZURE_API_BASE", servers["azure"].base_url)
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    page = batchyard.list_batches(custom_llm_provider="azure", limit=2)
    assert page.object == "list" and len(page.data) <= 2


def test_missing_key_and_unknown_provider_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "BATCHYARD_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        batchyard.retrieve_batch(batch_id="batch_1", custom_llm_provider="openai")
    with pytest.raises(InvalidInputError):
        batchyard.retrieve_batch(batch_id="batch_1", custom_llm_provider="vertex",  # type: ignore[arg-type]
                                 api_key="x")


def _wait(fetch: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while (batch := fetch()).status not in TERMINAL:
        assert time.monotonic() < deadline, f"stuck in {batch.status}"
        time.sleep(0.05)
    return batch

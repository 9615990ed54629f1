"""What the adapters put on the wire: URLs, auth, paging, streamed uploads and downloads."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchyard.errors import ConfigError, ProviderTransientError
from batchyard.providers import ProviderConfig, build_operations

from .conftest import Sleeps, async_provider, sync_provider

AZURE_BASE = "https://res.openai.azure.com"


def file_body(file_id: str = "file-1", size: int = 0) -> dict[str, object]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": 1,
            "filename": "in.jsonl", "purpose": "batch", "status": "processed"}


def recorder() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=file_body())

    return seen, httpx.MockTransport(handler)


@pytest.mark.parametrize(("config", "url", "auth"), [
    (ProviderConfig(kind="openai", api_key="sk-1"),
     "https://api.openai.com/v1/files/file-1", ("authorization", "Bearer sk-1")),
    (ProviderConfig(kind="azure", api_key="az", api_base=AZURE_BASE + "/",
                    api_version="2024-10-21"),
     AZURE_BASE + "/openai/files/file-1?api-version=2024-10-21", ("api-key", "az")),
    (ProviderConfig(kind="azure", api_key="az", api_base=AZURE_BASE + "/openai/v1"),
     AZURE_BASE + "/openai/v1/files/file-1", ("api-key", "az")),
    (ProviderConfig(kind="azure", api_key="az", api_base=AZURE_BASE, api_version="preview"),
     AZURE_BASE + "/openai/v1/files/file-1?api-version=preview", ("api-key", "az")),
    (ProviderConfig(kind="azure", azure_ad_token="entra", api_base=AZURE_BASE + "/openai",
                    api_version="2025-04-01-preview"),
     AZURE_BASE + "/openai/files/file-1?api-version=2025-04-01-preview",
     ("authorization", "Bearer entra")),
])
def test_urls_and_auth_per_provider_surface(config: ProviderConfig, url: str,
                                            auth: tuple[str, str], sleeps: Sleeps) -> None:
    seen, transport = recorder()
    sync_provider(transport, sleeps, config).retrieve_file("file-1")
    assert str(seen[0].url) == url
    assert seen[0].headers[auth[0]] == auth[1]


def test_ids_are_path_quoted(sleeps: Sleeps) -> None:
    seen, transport = recorder()
    sync_provider(transport, sleeps).retrieve_file("../batches")
    assert seen[0].url.raw_path == b"/v1/files/..%2Fbatches"


def test_azure_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError):
        build_operations(ProviderConfig(kind="azure", api_key="k"))


def test_azure_2024_10_21_lists_files_with_purpose_only() -> None:
    legacy = build_operations(ProviderConfig(kind="azure", api_key="k", api_base=AZURE_BASE,
                                             api_version="2024-10-21"))
    newer = build_operations(ProviderConfig(kind="azure", api_key="k", api_base=AZURE_BASE,
                                            api_version="2025-04-01-preview"))
    old_call = legacy.list_files_page("batch", 100, "file-a").call
    new_call = newer.list_files_page("batch", 100, "file-a").call
    assert dict(old_call.params) == {"purpose": "batch", "api-version": "2024-10-21"}
    assert dict(new_call.params) == {"purpose": "batch", "limit": 100, "after": "file-a",
                                     "api-version": "2025-04-01-preview"}


def test_list_batches_follows_after_until_has_more_is_false(sleeps: Sleeps) -> None:
    ids = [f"batch_{n}" for n in range(7)]
    afters: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        afters.append(after)
        limit = int(request.url.params["limit"])
        start = ids.index(after) + 1 if after else 0
        chunk = ids[start:start + limit]
        data = [{"id": i, "status": "completed"} for i in chunk]
        return httpx.Response(200, json={"object": "list", "data": data,
                                         "has_more": start + limit < len(ids)})

    provider = sync_provider(httpx.MockTransport(handler), sleeps)
    assert [b.id for b in provider.list_batches(page_size=3)] == ids
    assert afters == [None, "batch_2", "batch_5"]


def test_create_batch_body(sleeps: Sleeps) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "batch_1", "status": "validating"})

    sync_provider(httpx.MockTransport(handler), sleeps).create_batch(
        input_file_id="file-1", endpoint="/v1/chat/completions", metadata={"k": "v"})
    assert seen == [{"input_file_id": "file-1", "endpoint": "/v1/chat/completions",
                     "completion_window": "24h", "metadata": {"k": "v"}}]


class StreamingSink(httpx.BaseTransport):
    """Consumes request bodies chunk by chunk, as a socket would; counts what it saw."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.bodies: list[int] = []
        self.largest_chunk = 0
        self.tail = b""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        total = 0
        assert isinstance(request.stream, httpx.SyncByteStream)
        for chunk in request.stream:
            total += len(chunk)
            self.largest_chunk = max(self.largest_chunk, len(chunk))
            self.tail = (self.tail + chunk)[-4096:]
        self.bodies.append(total)
        if len(self.bodies) <= self.fail_first:
            return httpx.Response(503, json={"error": {"message": "busy", "code": "busy"}})
        return httpx.Response(200, json=file_body(size=total))


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "big.jsonl"
    line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "m", "messages": [{"role": "user",
                                                            "content": "y" * 900}]}})
    with path.open("w") as handle:
        for n in range(24_000):  # ~24 MB
            handle.write(line.replace('"x"', f'"r{n}"') + "\n")
    return path


def test_upload_streams_the_file_without_holding_it(big_jsonl: Path, sleeps: Sleeps) -> None:
    sink = StreamingSink()
    provider = sync_provider(sink, sleeps)
    tracemalloc.start()
    try:
        record = provider.upload_file(big_jsonl)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = big_jsonl.stat().st_size
    assert sink.bodies[0] > size and record.bytes == sink.bodies[0]
    assert sink.largest_chunk <= 64 * 1024
    assert peak < size // 20
    assert b'"r23999"' in sink.tail


def test_upload_retry_sends_the_whole_file_again(big_jsonl: Path, sleeps: Sleeps) -> None:
    sink = StreamingSink(fail_first=1)
    with big_jsonl.open("rb") as handle:
        sync_provider(sink, sleeps).upload_file(handle, filename="renamed.jsonl")
    assert len(sink.bodies) == 2 and sink.bodies[0] == sink.bodies[1]
    assert sink.bodies[1] > big_jsonl.stat().st_size


def test_upload_names_the_part_and_sends_the_purpose(tmp_path: Path, sleeps: Sleeps) -> None:
    seen, transport = recorder()
    path = tmp_path / "part_7.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    sync_provider(transport, sleeps).upload_file(path, purpose="batch")
    body = seen[0].content
    assert b'filename="part_7.jsonl"' in body and b'name="purpose"\r\n\r\nbatch' in body


class DropsMidway(httpx.SyncByteStream):
    """A response body that breaks after its first chunk (a dropped connection)."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"partial-"
        raise httpx.ReadError("connection reset")


def test_download_retry_rewinds_the_destination(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(200, stream=DropsMidway())
        return httpx.Response(200, content=b"line1\nline2\n")

    dest = io.BytesIO(b"keep:")
    dest.seek(0, io.SEEK_END)
    written = sync_provider(httpx.MockTransport(handler), sleeps).download_file("file-o", dest)
    assert written == 12 and dest.getvalue() == b"keep:line1\nline2\n"
    assert len(calls) == 2


class AsyncDropsMidway(httpx.AsyncByteStream):
    """The async twin of :class:`DropsMidway`."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"partial-"
        raise httpx.ReadError("connection reset")


class PipeLike(io.RawIOBase):
    """A write-only, non-seekable destination (like a pipe)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: Any) -> int:
        self.data += chunk
        return len(chunk)


@pytest.mark.anyio
async def test_async_download_retry_rewinds_the_destination(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(200, stream=AsyncDropsMidway())
        return httpx.Response(200, content=b"whole\n")

    dest = io.BytesIO()
    async with async_provider(handler, sleeps) as provider:
        assert await provider.download_file("file-o", dest) == 6
    assert dest.getvalue() == b"whole\n" and len(calls) == 2


def test_download_into_a_pipe_is_not_retried_after_bytes_went_out(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, stream=DropsMidway())

    sink = PipeLike()
    with pytest.raises(ProviderTransientError) as caught:
        sync_provider(httpx.MockTransport(handler), sleeps).download_file(
            "file-o", sink)  # type: ignore[arg-type]
    assert len(calls) == 1 and bytes(sink.data) == b"partial-"
    assert isinstance(caught.value.__cause__, httpx.ReadError)

"""The Anthropic adapter: Message Batches on Anthropic's wire.

Anthropic has no Files API: a batch's requests go inline in the create body
(``{"requests": [{"custom_id", "params"}, ...]}``), which is streamed here from a JSONL file
of requests, one per line, so a 256 MB part never sits in memory. Results are a JSONL file
at the batch's ``results_url``, streamed to disk by the shared executor. Requests go through
the same executors (and so the same retry rules) as OpenAI and Azure; 529 ``overloaded_error``
is a 5xx and retried like one.

A Message Batch is normalised into the same :class:`ProviderBatch` record as the others:
``in_progress`` stays, ``canceling`` becomes ``cancelling``, and ``ended`` becomes
``cancelled`` (a cancel was asked for), ``expired`` (some requests expired) or
``completed``; ``request_counts`` become total / completed (succeeded) / failed (errored,
canceled, expired).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx

from batchyard.config import HttpSettings
from batchyard.metrics.transport import async_metered, metered
from batchyard.providers.base import (
    ProviderBatch,
    ProviderConfig,
    ProviderPage,
    ProviderRequestCounts,
    UploadSource,
)
from batchyard.providers.http import (
    AsyncClosingClient,
    AsyncExecutor,
    Call,
    ClosingClient,
    Op,
    SyncExecutor,
    build_timeout,
)
from batchyard.providers.lending import LendingTransport
from batchyard.providers.wire import integer, next_cursor, optional_str, parse_page, timestamp

ANTHROPIC_API_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
ENDPOINT = "/v1/messages"
_CHUNK = 256 * 1024
_PREFIX = b'{"requests":['
_SUFFIX = b"]}"


def parse_message_batch(body: Mapping[str, Any]) -> ProviderBatch:
    """A MessageBatch as a :class:`ProviderBatch`."""
    counts = body.get("request_counts")
    if not isinstance(counts, Mapping):
        counts = {}
    tally = {name: integer(counts.get(name), 0) or 0
             for name in ("processing", "succeeded", "errored", "canceled", "expired")}
    ended = timestamp(body.get("ended_at"))
    cancel_at = timestamp(body.get("cancel_initiated_at"))
    status = _status(str(body.get("processing_status") or ""), cancel_at, tally["expired"])
    return ProviderBatch(
        id=str(body["id"]),
        status=status,
        endpoint=ENDPOINT,
        created_at=timestamp(body.get("created_at")),
        expires_at=timestamp(body.get("expires_at")),
        cancelling_at=cancel_at,
        completed_at=ended if status == "completed" else None,
        cancelled_at=ended if status == "cancelled" else None,
        expired_at=ended if status == "expired" else None,
        request_counts=ProviderRequestCounts(
            total=sum(tally.values()), completed=tally["succeeded"],
            failed=tally["errored"] + tally["canceled"] + tally["expired"]),
        results_url=optional_str(body.get("results_url")),
    )


def _status(processing: str, cancel_at: int | None, expired: int) -> str:
    if processing == "in_progress":
        return "in_progress"
    if processing == "canceling":
        return "cancelling"
    if processing != "ended":
        return processing or "unknown"
    if cancel_at is not None:
        return "cancelled"
    return "expired" if expired else "completed"


def _batch_page(body: Any) -> ProviderPage[ProviderBatch]:
    return parse_page(body, parse_message_batch)


def _deleted(body: Mapping[str, Any]) -> bool:
    return body.get("type") == "message_batch_deleted"


def _lines(source: UploadSource) -> Iterator[bytes]:
    """The non-empty lines of a JSONL source, without their line ends."""
    if isinstance(source, str | Path):
        with open(source, "rb") as handle:
            yield from _stripped(handle)
        return
    source.seek(0)  # a retry sends the body from its start again
    yield from _stripped(source)


def _stripped(handle: IO[bytes] | BinaryIO) -> Iterator[bytes]:
    for raw in handle:
        line = raw.strip()
        if line:
            yield line


def requests_body(source: UploadSource) -> Iterator[bytes]:
    """The create body ``{"requests":[line,line,...]}``, in chunks of about 256 KiB."""
    buffer = bytearray(_PREFIX)
    first = True
    for line in _lines(source):
        if not first:
            buffer += b","
        buffer += line
        first = False
        if len(buffer) >= _CHUNK:
            yield bytes(buffer)
            buffer.clear()
    buffer += _SUFFIX
    yield bytes(buffer)


def requests_body_length(source: UploadSource) -> tuple[int, int]:
    """(bytes of the create body, number of requests), read without keeping the lines."""
    size = count = 0
    for line in _lines(source):
        size += len(line)
        count += 1
    return len(_PREFIX) + size + max(count - 1, 0) + len(_SUFFIX), count


class AnthropicOperations:
    """Request building and answer parsing for Anthropic's Message Batches API."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        base = (config.api_base or ANTHROPIC_API_BASE).strip().rstrip("/")
        self.base_url = base.removesuffix("/v1")  # either form is accepted

    def auth_headers(self) -> dict[str, str]:
        """``x-api-key`` and ``anthropic-version`` (sent on every request by the client)."""
        headers = {"anthropic-version": self.config.api_version or ANTHROPIC_VERSION}
        if self.config.api_key is not None:
            headers["x-api-key"] = self.config.api_key.get_secret_value()
        return headers

    def url(self, *segments: str) -> str:
        """An absolute URL under ``/v1/messages/batches``; ids are path-quoted."""
        parts = [quote(part, safe="") for part in segments]
        return "/".join([self.base_url, "v1", "messages", "batches", *parts])

    def create_batch(self, requests: UploadSource) -> Op[ProviderBatch]:
        """``POST /v1/messages/batches`` with the requests streamed from ``requests``."""
        length, _ = requests_body_length(requests)
        headers = {"content-type": "application/json", "content-length": str(length)}
        call = Call("POST", self.url(), content=lambda: requests_body(requests), headers=headers)
        return Op(call, parse_message_batch)

    def retrieve_batch(self, batch_id: str) -> Op[ProviderBatch]:
        """``GET /v1/messages/batches/{id}``."""
        return Op(Call("GET", self.url(batch_id)), parse_message_batch)

    def list_batches_page(self, limit: int | None, after: str | None,
                          before: str | None = None) -> Op[ProviderPage[ProviderBatch]]:
        """One page of ``GET /v1/messages/batches`` (newest first)."""
        params = {name: value for name, value in
                  (("limit", limit), ("after_id", after), ("before_id", before))
                  if value is not None}
        return Op(Call("GET", self.url(), params), _batch_page)

    def cancel_batch(self, batch_id: str) -> Op[ProviderBatch]:
        """``POST /v1/messages/batches/{id}/cancel``."""
        return Op(Call("POST", self.url(batch_id, "cancel")), parse_message_batch)

    def delete_batch(self, batch_id: str) -> Op[bool]:
        """``DELETE /v1/messages/batches/{id}`` (only once it has ended)."""
        return Op(Call("DELETE", self.url(batch_id)), _deleted)

    def results(self, batch_id: str, results_url: str | None = None) -> Call:
        """``GET`` the results JSONL. The batch's ``results_url`` is followed only when it is
        on the configured host: the API key goes with the request."""
        url = self.url(batch_id, "results")
        if results_url and _same_origin(results_url, self.base_url):
            url = results_url
        return Call("GET", url, headers={"accept": "application/binary"})


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class AnthropicClient(ClosingClient):
    """A synchronous Message Batches client over ``httpx.Client``."""

    def __init__(self, ops: AnthropicOperations, executor: SyncExecutor) -> None:
        self._ops = ops
        self._executor = executor
        self._run = executor.run

    def create_batch(self, requests: UploadSource) -> ProviderBatch:
        """Create a batch from a JSONL of ``{"custom_id", "params"}`` lines."""
        return self._run(self._ops.create_batch(requests))

    def retrieve_batch(self, batch_id: str) -> ProviderBatch:
        """Fetch one batch."""
        return self._run(self._ops.retrieve_batch(batch_id))

    def list_batches_page(self, *, limit: int | None = None, after: str | None = None,
                          before: str | None = None) -> ProviderPage[ProviderBatch]:
        """One page of batches (``after``: older, ``before``: newer)."""
        return self._run(self._ops.list_batches_page(limit, after, before))

    def list_batches(self, *, page_size: int = 100) -> Iterator[ProviderBatch]:
        """Every batch, newest first, page after page."""
        after: str | None = None
        while True:
            page = self.list_batches_page(limit=page_size, after=after)
            yield from page.data
            if (after := next_cursor(page, after)) is None:
                return

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        """Ask for a cancel (the batch goes ``cancelling``, then ends)."""
        return self._run(self._ops.cancel_batch(batch_id))

    def delete_batch(self, batch_id: str) -> bool:
        """Delete an ended batch; True when the provider says it is gone."""
        return self._run(self._ops.delete_batch(batch_id))

    def download_results(self, batch_id: str, dest: BinaryIO,
                         results_url: str | None = None) -> int:
        """Stream the results JSONL into ``dest``; returns the bytes written."""
        return self._executor.download(self._ops.results(batch_id, results_url), dest)


class AsyncAnthropicClient(AsyncClosingClient):
    """The asynchronous twin of :class:`AnthropicClient`."""

    def __init__(self, ops: AnthropicOperations, executor: AsyncExecutor) -> None:
        self._ops = ops
        self._executor = executor
        self._run = executor.run

    async def create_batch(self, requests: UploadSource) -> ProviderBatch:
        """Create a batch from a JSONL of ``{"custom_id", "params"}`` lines."""
        return await self._run(self._ops.create_batch(requests))

    async def retrieve_batch(self, batch_id: str) -> ProviderBatch:
        """Fetch one batch."""
        return await self._run(self._ops.retrieve_batch(batch_id))

    async def list_batches_page(self, *, limit: int | None = None, after: str | None = None,
                                before: str | None = None) -> ProviderPage[ProviderBatch]:
        """One page of batches (``after``: older, ``before``: newer)."""
        return await self._run(self._ops.list_batches_page(limit, after, before))

    async def list_batches(self, *, page_size: int = 100) -> AsyncIterator[ProviderBatch]:
        """Every batch, newest first, page after page."""
        after: str | None = None
        while True:
            page = await self.list_batches_page(limit=page_size, after=after)
            for item in page.data:
                yield item
            if (after := next_cursor(page, after)) is None:
                return

    async def cancel_batch(self, batch_id: str) -> ProviderBatch:
        """Ask for a cancel (the batch goes ``cancelling``, then ends)."""
        return await self._run(self._ops.cancel_batch(batch_id))

    async def delete_batch(self, batch_id: str) -> bool:
        """Delete an ended batch; True when the provider says it is gone."""
        return await self._run(self._ops.delete_batch(batch_id))

    async def download_results(self, batch_id: str, dest: BinaryIO,
                               results_url: str | None = None) -> int:
        """Stream the results JSONL into ``dest``; returns the bytes written."""
        return await self._executor.download(self._ops.results(batch_id, results_url), dest)


def _client_headers(ops: AnthropicOperations) -> dict[str, str]:
    # Auth lives in the client's default headers, never in a Call, so it is never logged.
    return {**ops.auth_headers(), "Accept": "application/json"}


def build_anthropic_provider(config: ProviderConfig, http: HttpSettings | None = None, *,
                             transport: httpx.BaseTransport | None = None,
                             label: str = "") -> AnthropicClient:
    """A synchronous Anthropic adapter; ``transport`` lets tests mount the emulator;
    ``label`` (the deployment id) names the calls in the provider metrics."""
    http = http or HttpSettings()
    ops = AnthropicOperations(config)
    client = httpx.Client(transport=metered(transport or LendingTransport(), label),
                          headers=_client_headers(ops), timeout=build_timeout(http))
    return AnthropicClient(ops, SyncExecutor(client, http))


def build_async_anthropic_provider(config: ProviderConfig, http: HttpSettings | None = None, *,
                                   transport: httpx.AsyncBaseTransport | None = None,
                                   label: str = "") -> AsyncAnthropicClient:
    """An asynchronous Anthropic adapter on ``httpx.AsyncClient``."""
    http = http or HttpSettings()
    ops = AnthropicOperations(config)
    client = httpx.AsyncClient(transport=async_metered(transport, label),
                               headers=_client_headers(ops),
                               timeout=build_timeout(http))
    return AsyncAnthropicClient(ops, AsyncExecutor(client, http))

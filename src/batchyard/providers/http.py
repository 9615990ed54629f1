"""HTTP machinery shared by the sync and async adapters: calls, retries, error mapping.

An adapter describes each operation once as a :class:`Call` (what to send) plus a parser
(what the answer means). :class:`SyncExecutor` and :class:`AsyncExecutor` only differ in how
they wait: both ask the same :class:`~batchyard.providers.failures.RetryClock` whether and
how long to wait, and map failures with the same functions.

Like the official SDKs, a POST that lost its connection is sent again, so a retried batch
create may exist twice at the provider; callers that must not double-spend put an id in the
batch metadata and look for it before creating again (see ARCHITECTURE.md, crash safety).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, Self, TypeVar

import httpx

from batchyard.config import HttpSettings
from batchyard.errors import ProviderError, ProviderTransientError
from batchyard.metrics.counters import PROVIDER_RETRIES, retry_reason
from batchyard.providers.base import UploadSource
from batchyard.providers.failures import RetryClock, connection_error, request_id, status_error

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """A multipart file part: a path is opened afresh per attempt, a file object rewound."""

    source: UploadSource
    filename: str
    fields: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Call:
    """One HTTP request, described without sending it."""

    method: str
    url: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    json: Any = None
    upload: Upload | None = None
    #: A streamed request body, made afresh for every attempt (so a retry resends it all).
    content: Callable[[], Iterator[bytes]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Op(Generic[T]):
    """A call and the parser that turns its JSON answer into a record."""

    call: Call
    parse: Callable[[Any], T]


def upload_filename(source: UploadSource, filename: str | None) -> str:
    """The multipart filename: given, else the path's or open file's base name."""
    if filename:
        return filename
    name = source if isinstance(source, str | Path) else getattr(source, "name", None)
    if isinstance(name, str | Path) and str(name):
        return os.path.basename(str(name))
    return "upload.jsonl"


async def _as_async(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@contextmanager
def request_kwargs(call: Call, *, asynchronous: bool = False) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``client.build_request``, with the upload file open.

    httpx streams a file object in a multipart body chunk by chunk (64 KiB) and computes the
    Content-Length from the file size, so an upload never sits in memory whole; a streamed
    ``content`` is sent as it is produced (an async client needs it as an async iterator).
    """
    kwargs: dict[str, Any] = {"method": call.method, "url": call.url, "params": dict(call.params)}
    if call.headers:
        kwargs["headers"] = dict(call.headers)
    if call.json is not None:
        kwargs["json"] = call.json
    if call.content is not None:
        chunks = call.content()
        kwargs["content"] = _as_async(chunks) if asynchronous else chunks
    upload = call.upload
    if upload is None:
        yield kwargs
        return
    kwargs["data"] = dict(upload.fields)
    if isinstance(upload.source, str | Path):
        with open(upload.source, "rb") as handle:
            kwargs["files"] = {"file": (upload.filename, handle, upload.content_type)}
            yield kwargs
        return
    upload.source.seek(0)  # a retry must send the file from its start again
    kwargs["files"] = {"file": (upload.filename, upload.source, upload.content_type)}
    yield kwargs


class _Failed(Exception):
    """Internal: one attempt failed with ``error``; ``retryable`` says if another may help."""

    def __init__(self, error: ProviderError, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


def check(response: httpx.Response) -> httpx.Response:
    """Return a 2xx response; raise :class:`_Failed` (chained to httpx's error) otherwise."""
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        error, retryable = status_error(response)
        raise _Failed(error, retryable) from exc
    return response


def json_body(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; a non-JSON one is a provider fault, not retried."""
    try:
        return response.json()
    except ValueError as exc:
        error = ProviderTransientError("provider answered with something that is not JSON",
                                       status=response.status_code,
                                       request_id=request_id(response))
        raise _Failed(error, False) from exc


def parse_answer(op: Op[T], body: Any) -> T:
    """Parse a JSON answer; a shape we cannot read becomes a provider error."""
    try:
        return op.parse(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderTransientError(
            f"unexpected provider answer to {op.call.method} {op.call.url}") from exc


def _cut_short(exc: httpx.TransportError, start: int | None, written: int) -> _Failed:
    # Bytes already written to a stream we cannot rewind: a retry would duplicate them.
    return _Failed(connection_error(exc), retryable=start is not None or written == 0)


def _log_retry(error: ProviderError, attempt: int, delay: float) -> None:
    PROVIDER_RETRIES.labels(reason=retry_reason(error.status)).inc()
    log.warning("provider.retry", extra={
        "status": error.status, "code": error.code, "request_id": error.request_id,
        "attempt": attempt, "delay": round(delay, 3)})


def build_timeout(settings: HttpSettings) -> httpx.Timeout:
    """httpx timeouts from the settings."""
    return httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)


class SyncExecutor:
    """Runs calls on an ``httpx.Client`` with the shared retry rules."""

    def __init__(self, client: httpx.Client, settings: HttpSettings,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self._settings = settings
        self._sleep = sleep

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it succeeds or the retry clock says stop."""
        clock = RetryClock(self._settings)
        while True:
            try:
                return attempt()
            except (_Failed, httpx.TransportError) as exc:
                delay = _delay_or_raise(clock, exc)
            self._sleep(delay)

    def run(self, op: Op[T]) -> T:
        """Send ``op.call`` (with retries) and parse the JSON answer."""
        return parse_answer(op, self.retrying(lambda: self._send_json(op.call)))

    def _send_json(self, call: Call) -> Any:
        with request_kwargs(call) as kwargs:
            response = self.client.send(self.client.build_request(**kwargs))
        return json_body(check(response))

    def download(self, call: Call, dest: BinaryIO) -> int:
        """Stream the response body into ``dest``; a retry rewinds ``dest`` first."""
        start = dest.tell() if dest.seekable() else None
        return self.retrying(lambda: self._copy(call, dest, start))

    def _copy(self, call: Call, dest: BinaryIO, start: int | None) -> int:
        _rewind(dest, start)
        with request_kwargs(call) as kwargs:
            response = self.client.send(self.client.build_request(**kwargs), stream=True)
        try:
            if not response.is_success:
                response.read()
                check(response)
            written = 0
            try:
                for chunk in response.iter_bytes():
                    written += dest.write(chunk) or 0
            except httpx.TransportError as exc:
                raise _cut_short(exc, start, written) from exc
            return written
        finally:
            response.close()


def _delay_or_raise(clock: RetryClock, exc: _Failed | httpx.TransportError) -> float:
    """The wait before the next attempt; raises the mapped error when there is none."""
    if isinstance(exc, _Failed):
        failure, cause = exc, exc.__cause__
    else:
        failure, cause = _Failed(connection_error(exc), True), exc
    delay = clock.delay_after(failure.error, failure.retryable)
    if delay is None:
        raise failure.error from cause
    _log_retry(failure.error, clock.attempts, delay)
    return delay


class AsyncExecutor:
    """Runs calls on an ``httpx.AsyncClient`` with the shared retry rules."""

    def __init__(self, client: httpx.AsyncClient, settings: HttpSettings,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self._settings = settings
        self._sleep = sleep

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await ``attempt`` until it succeeds or the retry clock says stop."""
        clock = RetryClock(self._settings)
        while True:
            try:
                return await attempt()
            except (_Failed, httpx.TransportError) as exc:
                delay = _delay_or_raise(clock, exc)
            await self._sleep(delay)

    async def run(self, op: Op[T]) -> T:
        """Send ``op.call`` (with retries) and parse the JSON answer."""
        return parse_answer(op, await self.retrying(lambda: self._send_json(op.call)))

    async def _send_json(self, call: Call) -> Any:
        with request_kwargs(call, asynchronous=True) as kwargs:
            response = await self.client.send(self.client.build_request(**kwargs))
        return json_body(check(response))

    async def download(self, call: Call, dest: BinaryIO) -> int:
        """Stream the response body into ``dest``; a retry rewinds ``dest`` first."""
        start = dest.tell() if dest.seekable() else None
        return await self.retrying(lambda: self._copy(call, dest, start))

    async def _copy(self, call: Call, dest: BinaryIO, start: int | None) -> int:
        _rewind(dest, start)
        with request_kwargs(call, asynchronous=True) as kwargs:
            response = await self.client.send(self.client.build_request(**kwargs), stream=True)
        try:
            if not response.is_success:
                await response.aread()
                check(response)
            written = 0
            try:
                async for chunk in response.aiter_bytes():
                    written += dest.write(chunk) or 0
            except httpx.TransportError as exc:
                raise _cut_short(exc, start, written) from exc
            return written
        finally:
            await response.aclose()


def _rewind(dest: BinaryIO, start: int | None) -> None:
    if start is not None and dest.tell() != start:
        dest.seek(start)
        dest.truncate()


class ClosingClient:
    """``close`` and ``with`` for a synchronous provider client over one executor."""

    _executor: SyncExecutor

    def close(self) -> None:
        """Close the HTTP client."""
        self._executor.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClosingClient:
    """``aclose`` and ``async with`` for an asynchronous provider client over one executor."""

    _executor: AsyncExecutor

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._executor.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

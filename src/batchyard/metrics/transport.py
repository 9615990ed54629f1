"""httpx transports that count provider calls: operation, deployment, outcome, bytes, time.

Wrapping the transport sees every attempt, including the ones the retry loop repeats and
the ones that never got an answer (timeouts, lost connections), without the adapters
knowing about metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx

from batchyard.metrics.counters import (
    PROVIDER_CALLS,
    PROVIDER_DOWNLOAD_BYTES,
    PROVIDER_LATENCY,
    PROVIDER_UPLOAD_BYTES,
)

_LAST_SEGMENT_OPS = {"cancel": "cancel_batch", "content": "download_file",
                     "results": "download_results"}


def operation_of(method: str, path: str) -> str:
    """A bounded operation name for a provider URL (``create_batch``, ``upload_file`` ...)."""
    segments = [s for s in path.split("/") if s]
    for kind in ("batches", "files"):
        if kind not in segments:
            continue
        rest = segments[len(segments) - segments[::-1].index(kind):]
        noun = "batch" if kind == "batches" else "file"
        if rest and rest[-1] in _LAST_SEGMENT_OPS and len(rest) > 1:
            return _LAST_SEGMENT_OPS[rest[-1]]
        if not rest:
            return {"POST": "upload_file" if noun == "file" else "create_batch"}.get(
                method, f"list_{kind}")
        return {"DELETE": f"delete_{noun}"}.get(method, f"retrieve_{noun}")
    return "other"


def outcome_of(status: int) -> str:
    """``ok`` for 2xx/3xx; ``429``; ``5xx``; ``4xx`` for the other refusals."""
    if status < 400:
        return "ok"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"


def _failure(exc: httpx.TransportError) -> str:
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"


class _Probe:
    """The bookkeeping of one attempt, shared by the sync and async transports."""

    def __init__(self, deployment: str, request: httpx.Request) -> None:
        self.deployment = deployment
        self.operation = operation_of(request.method, request.url.path)
        self.started = time.perf_counter()
        sent = request.headers.get("content-length")
        if sent and sent.isdigit():
            PROVIDER_UPLOAD_BYTES.labels(deployment=deployment).inc(int(sent))

    def done(self, outcome: str) -> None:
        PROVIDER_LATENCY.labels(operation=self.operation).observe(
            time.perf_counter() - self.started)
        PROVIDER_CALLS.labels(operation=self.operation, deployment=self.deployment,
                              outcome=outcome).inc()


def _count_if_read(response: httpx.Response, deployment: str) -> bool:
    """Count a body the transport already read whole (True); False: it is still a stream."""
    try:
        size = len(response.content)
    except httpx.ResponseNotRead:
        return False
    PROVIDER_DOWNLOAD_BYTES.labels(deployment=deployment).inc(size)
    return True


class _CountingStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, deployment: str) -> None:
        self._inner = inner
        self._bytes = PROVIDER_DOWNLOAD_BYTES.labels(deployment=deployment)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._bytes.inc(len(chunk))
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncCountingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, deployment: str) -> None:
        self._inner = inner
        self._bytes = PROVIDER_DOWNLOAD_BYTES.labels(deployment=deployment)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._bytes.inc(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class MeteredTransport(httpx.BaseTransport):
    """Counts every call ``inner`` sends for one deployment."""

    def __init__(self, inner: httpx.BaseTransport, deployment: str) -> None:
        self._inner = inner
        self._deployment = deployment

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        probe = _Probe(self._deployment, request)
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            probe.done(_failure(exc))
            raise
        probe.done(outcome_of(response.status_code))
        if not _count_if_read(response, self._deployment):
            response.stream = _CountingStream(
                response.stream, self._deployment)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncMeteredTransport(httpx.AsyncBaseTransport):
    """Counts every call ``inner`` sends for one deployment (async clients)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, deployment: str) -> None:
        self._inner = inner
        self._deployment = deployment

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        probe = _Probe(self._deployment, request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            probe.done(_failure(exc))
            raise
        probe.done(outcome_of(response.status_code))
        if not _count_if_read(response, self._deployment):
            response.stream = _AsyncCountingStream(
                response.stream, self._deployment)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def metered(transport: httpx.BaseTransport | None, deployment: str) -> MeteredTransport:
    """``transport`` (default: httpx's own) with provider-call metrics for ``deployment``."""
    return MeteredTransport(transport or httpx.HTTPTransport(), deployment or "default")


def async_metered(transport: httpx.AsyncBaseTransport | None,
                  deployment: str) -> AsyncMeteredTransport:
    """The async twin of :func:`metered`."""
    return AsyncMeteredTransport(transport or httpx.AsyncHTTPTransport(), deployment or "default")

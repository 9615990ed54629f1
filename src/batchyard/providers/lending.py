"""An httpx transport that many threads may share: each request borrows a pool of its own.

Why: httpcore's connection pool (1.0.9, and its master as of 2026-09) can close a connection
it has just handed to a waiting request. ``_assign_requests_to_connections`` assigns an idle
keep-alive connection to a queued request under the pool lock, but the connection stays
``IDLE`` until the waiting thread gets to ``handle_request``; another thread's pass in that
gap still sees it idle and closes it (as surplus keep-alive, which in 1.0.9 fires whenever
the pool holds more than ``max_keepalive_connections`` connections *in total*, or to make
room at ``max_connections``). ``close`` does not look at the state, so when the waiting
thread has started its request by then, the socket is closed under it: ``[Errno 9] Bad file
descriptor`` (and, as encode/httpcore issue 1110 reports, sometimes a hang until the read
timeout instead). Our poll tasks
put 16 threads per task, several tasks per process, on one deployment's client: far more
than 20 at once, so the pool closed assigned connections hundreds of times per sweep and,
about once per few thousand polls, one already in use.

Here no pool ever sees two requests at once: a request borrows an ``httpx.HTTPTransport``
from a shelf (the most recently returned, whose connection is the freshest), and gives it
back when its response is closed. Each borrowed transport keeps one keep-alive connection;
there are as many as requests were ever in flight at once. They share one SSL context.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator

import httpx


class _GiveBackStream(httpx.SyncByteStream):
    """The response body; closing it (once) returns the transport to the shelf."""

    def __init__(self, inner: httpx.SyncByteStream, give_back: Callable[[], None]) -> None:
        self._inner = inner
        self._give_back: Callable[[], None] | None = give_back

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            give_back, self._give_back = self._give_back, None
            if give_back is not None:
                give_back()


class LendingTransport(httpx.BaseTransport):
    """A transport for a client shared by threads: one request at a time per inner pool."""

    def __init__(self, factory: Callable[[ssl.SSLContext], httpx.BaseTransport] | None = None,
                 ) -> None:
        self._factory = factory or (lambda context: httpx.HTTPTransport(verify=context))
        self._shelf: list[httpx.BaseTransport] = []
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._closed = False
        #: How many inner transports exist (in use or on the shelf).
        self.created = 0

    def _borrow(self) -> httpx.BaseTransport:
        with self._lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            if self._shelf:
                return self._shelf.pop()
            if self._context is None:  # built once: loading the CA bundle takes milliseconds
                self._context = httpx.create_ssl_context()
            self.created += 1
            context = self._context
        return self._factory(context)

    def _return(self, transport: httpx.BaseTransport) -> None:
        with self._lock:
            if not self._closed:
                self._shelf.append(transport)
                return
        transport.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._borrow()
        try:
            response = transport.handle_request(request)
        except BaseException:
            self._return(transport)
            raise
        if response.is_closed:  # an answer already read whole (an in-process transport's)
            self._return(transport)
            return response
        response.stream = _GiveBackStream(
            response.stream, lambda: self._return(transport))  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        """Close the idle transports; the ones in use close when their response does."""
        with self._lock:
            self._closed = True
            idle, self._shelf = self._shelf, []
        for transport in idle:
            transport.close()

"""The HTTP protocol ``serve`` and ``up`` run: uvicorn's httptools protocol with two bounds it
lacks. A request's header block must arrive within ``api.header_read_timeout`` seconds (408,
connection closed) and stay under ``api.max_header_bytes`` while it is being read (431), so a
client that trickles or inflates its headers cannot hold a connection or buffer megabytes.
Idle keep-alive connections are left to uvicorn's own keep-alive timeout."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from batchyard.config import ApiSettings, Settings


@functools.cache
def _limits() -> ApiSettings:
    """The API settings of this process (read once; ``serve --workers N`` children too)."""
    return Settings().api


def _refusal(status: int, reason: str, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": code}})
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header read timeout and a header size bound."""

    limits: ApiSettings | None = None  # tests set this; otherwise read from the settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.limits or _limits()
        self._header_timeout = cfg.header_read_timeout
        self._max_header_bytes = cfg.max_header_bytes
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, payload: bytes) -> None:
        self._headers_done()
        if not self.transport.is_closing():
            self.transport.write(payload)
            self.transport.close()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._refuse(_refusal(408, "Request Timeout", "The request headers took longer than "
                              f"{self._header_timeout:g} seconds to arrive.", "request_timeout"))

    def data_received(self, data: bytes) -> None:
        reading_headers = self._header_timer is not None
        super().data_received(data)
        if reading_headers and self._header_timer is not None:  # still inside the header block
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(_refusal(
                    431, "Request Header Fields Too Large", "Request headers are too large "
                    f"(the limit is {self._max_header_bytes} bytes).", "headers_too_large"))

    def on_headers_complete(self) -> None:
        self._headers_done()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

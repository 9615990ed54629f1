"""Pure ASGI middleware: request ids and the crash envelope; refusing hostile requests early."""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchyard.api.inputs import query_with_nul
from batchyard.errors import BatchyardError

logger = logging.getLogger(__name__)

_CRASH_BODY = orjson.dumps({"error": {
    "message": "The server had an error while processing your request.",
    "type": "server_error", "param": None, "code": None}})


class RequestIdMiddleware:
    """Adds ``x-request-id: req_<32 hex>`` and turns an escaped exception into a 500 envelope.

    Written as raw ASGI (not BaseHTTPMiddleware) so it neither buffers streamed bodies nor
    costs a task switch per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Not a secret, only a correlation id: the PRNG spares a getrandom() call per request.
        request_id = b"req_%032x" % random.getrandbits(128)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("api.crash", extra={"request_id": request_id.decode()})
            if started:
                raise
            await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": _CRASH_BODY})


class RequestTimeoutError(BatchyardError):
    """The client stopped sending its request body."""

    http_status = 408
    error_type = "invalid_request_error"


def _envelope(status: int, message: str, *, param: str | None = None,
              code: str | None = None) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": param, "code": code}})
    return {"type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}, body


class InputGuard:
    """Refuses, before any route runs, what no route could store or should wait for.

    A NUL character in the path (404: no object has such an id) or in the query string (400);
    request headers over ``max_header_bytes`` in total (431); and a request body whose next
    chunk takes longer than ``body_timeout`` seconds to arrive (408), so a client that
    declares more than it sends does not hold a connection and a worker thread forever.
    """

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            start, body = refusal
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        timeout = self.body_timeout
        body_done = False

        async def bounded_receive() -> Message:
            # Only the body is bounded: once it has arrived, receive() is Starlette waiting
            # for a disconnect while it streams a response, which may take any time.
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeoutError(
                    f"The request body did not arrive within {timeout:g} seconds.",
                    code="request_timeout") from None
            body_done = not message.get("more_body", False)
            return message

        await self.app(scope, bounded_receive, send)

    def _refusal(self, scope: Scope) -> tuple[dict[str, Any], bytes] | None:
        if "\x00" in scope["path"]:
            return _envelope(404, "No such object: the path contains a NUL character.",
                             code="not_found")
        name = query_with_nul(scope.get("query_string", b""))
        if name is not None:
            return _envelope(400, f"Invalid value for '{name}': must not contain the NUL "
                             "character.", param=name, code="invalid_value")
        size = sum(len(key) + len(value) for key, value in scope["headers"])
        if size > self.max_header_bytes:
            return _envelope(431, f"Request headers are too large ({size} bytes; the limit is "
                             f"{self.max_header_bytes}).", code="headers_too_large")
        return None

"""Pure ASGI middleware: an ``x-request-id`` on every response, even on a crash."""

from __future__ import annotations

import logging
import random

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

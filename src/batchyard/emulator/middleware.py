"""Cross-cutting behaviour of every API call: request ids, API keys and call-level faults.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) so request bodies stream
through untouched and a "dropped connection" can really stop mid-response.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import orjson

from batchyard.emulator import ids
from batchyard.emulator.errors import EmulatorError, Surface, error_body, surface_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ADMIN_PREFIX = "/_emulator"


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised on purpose to cut a response short (the "dropped connection" fault)."""


class QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


class EmulatorMiddleware:
    """Adds x-request-id (and Azure's apim-request-id), checks keys, injects faults."""

    def __init__(self, app: ASGIApp, emulator: Any) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flavor = self.emulator.flavor
        request_id = ids.request_id(flavor)
        header = b"request-id" if flavor == "anthropic" else b"x-request-id"
        extra = [(header, request_id.encode())]
        if flavor == "azure":
            extra.append((b"apim-request-id", request_id.encode()))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send_with_id)
            return
        surface = surface_of(path, flavor)
        problem = self._auth_problem(scope) or _version_problem(scope, flavor)
        if problem is not None:
            await send_error(send_with_id, problem, surface)
            return
        await self._with_faults(scope, receive, send_with_id, surface)

    def _auth_problem(self, scope: Scope) -> EmulatorError | None:
        keys = self.emulator.config.api_keys
        if not keys:
            return None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key" if self.emulator.flavor == "anthropic" else b"api-key",
                            b"").decode()
        auth = headers.get(b"authorization", b"").decode()
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given in keys:
            return None
        if self.emulator.flavor == "anthropic":  # x-api-key, or a bearer token
            return EmulatorError(401, "invalid x-api-key")
        if self.emulator.flavor == "azure":
            message = ("Access denied due to invalid subscription key or wrong API endpoint. "
                       "Make sure to provide a valid key for an active subscription and use a "
                       "correct regional API endpoint for your resource.")
            return EmulatorError(401, message, code="401", azure_code="401")
        if not given:
            return EmulatorError(401, "You didn't provide an API key. You need to provide your "
                                 "API key in an Authorization header using Bearer auth.")
        return EmulatorError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def _with_faults(self, scope: Scope, receive: Receive, send: Send,
                           surface: Surface) -> None:
        fault = self.emulator.take_call_fault(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.kind == "rate_limit":
            await send_error(send, self._rate_limited(), surface)
        elif fault.kind == "server_error":
            await send_error(send, _server_error(), surface)
        elif fault.kind == "overloaded":
            await send_error(send, self._overloaded(), surface)
        elif fault.kind == "drop":
            await self._drop(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _retry_headers(self) -> dict[str, str]:
        seconds = self.emulator.faults.retry_after
        header = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
        if self.emulator.flavor == "anthropic":  # Anthropic sends whole seconds only
            return {"retry-after": str(math.ceil(seconds))}
        return {"retry-after": header, "retry-after-ms": str(math.ceil(seconds * 1000))}

    def _overloaded(self) -> EmulatorError:
        headers = self._retry_headers()
        if self.emulator.flavor == "anthropic":
            return EmulatorError(529, "Overloaded", headers=headers)
        return EmulatorError(503, "The engine is currently overloaded, please try again "
                             "later.", type="server_error", headers=headers)

    def _rate_limited(self) -> EmulatorError:
        seconds = self.emulator.faults.retry_after
        headers = self._retry_headers()
        if self.emulator.flavor == "anthropic":
            return EmulatorError(429, "This request would exceed the rate limit for your "
                                 "organization. Please retry after the Retry-After delay.",
                                 headers=headers)
        if self.emulator.flavor == "azure":
            message = ("Requests to the Batch Operation under Azure OpenAI API have exceeded "
                       f"the rate limit of your current pricing tier. Please retry after "
                       f"{math.ceil(seconds)} seconds.")
            return EmulatorError(429, message, type="requests", code="429", azure_code="429",
                                 headers=headers)
        return EmulatorError(429, "Rate limit reached for requests. Please try again in "
                             f"{seconds:g}s.", type="requests", code="rate_limit_exceeded",
                             headers=headers)

    async def _drop(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.emulator.faults.drop_after_handling:
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
        # Promise a body, deliver a fragment, then vanish: the client sees a broken
        # connection (uvicorn closes the socket; in-process callers get the httpx error).
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"1024")]})
        await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})
        raise ConnectionDropped("emulator: connection dropped on purpose")


def _version_problem(scope: Scope, flavor: str) -> EmulatorError | None:
    """Anthropic refuses a call without the ``anthropic-version`` header."""
    if flavor != "anthropic":
        return None
    headers = dict(scope.get("headers") or [])
    if headers.get(b"anthropic-version"):
        return None
    return EmulatorError(400, "anthropic-version: header is required")


def _server_error() -> EmulatorError:
    return EmulatorError(500, "The server had an error while processing your request. "
                         "Sorry about that!", type="server_error")


async def send_error(send: Send, exc: EmulatorError, surface: Surface) -> None:
    """Answer with the error envelope of ``surface``."""
    body = orjson.dumps(error_body(exc, surface))
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

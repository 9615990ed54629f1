"""The two hottest calls answered in plain ASGI, ahead of FastAPI's routing.

SDKs wait for a batch by retrieving it over and over, and pipelines create batches in
bursts; for ``GET <prefix>/batches/{id}`` and ``POST <prefix>/batches`` FastAPI's middleware
layers, route matching over six prefixes and dependency solving cost more CPU than the
database work. This middleware serves exactly those two shapes by calling the very handlers
the routes call (:func:`~batchyard.api.batches.handle_create`,
:func:`~batchyard.api.batches.handle_retrieve`) and renders their errors with the same
functions as the app's exception handlers (a parity test holds the two paths to the same
answers). Every other request, including these calls under a path it does not recognise (a
``root_path``, a trailing slash), goes on to the full app unchanged; the routes stay there
too and document the API.

:class:`HotPathFront` puts these two ahead of the framework's own middleware as well (its
server-error, telemetry and body-limit layers): a hot request runs through the app's
metrics, request-id and input-guard middleware and this handler only, while every other
request goes down the full stack, which has the same three middleware in the same order.
"""

from __future__ import annotations

from collections.abc import Awaitable

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from batchyard.api.batches import handle_create, handle_retrieve
from batchyard.api.errors import error_response, validation_error_response
from batchyard.errors import BatchyardError

_MARKER = "/batches/"


def retrieve_batch_id(scope: Scope, prefixes: frozenset[str]) -> str | None:
    """The batch id if this request is ``GET <prefix>/batches/<id>``, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    head, marker, batch_id = path.rpartition(_MARKER)
    if not marker or not batch_id or "/" in batch_id or head not in prefixes:
        return None
    return batch_id


class BatchFastPath:
    """Serves ``GET .../batches/{id}`` and ``POST .../batches`` without the framework.

    ``route_prefixes`` are the (prefix, forced provider) pairs the routes are mounted under.
    """

    def __init__(self, app: ASGIApp, route_prefixes: tuple[tuple[str, str | None], ...]) -> None:
        self.app = app
        self.prefixes = frozenset(prefix for prefix, _ in route_prefixes)
        self.creates = {f"{prefix}/batches": provider for prefix, provider in route_prefixes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch_id = retrieve_batch_id(scope, self.prefixes)
        if batch_id is not None:
            await self._answer(scope, receive, send, handle_retrieve(Request(scope), batch_id))
        elif self._is_create(scope):
            request = Request(scope, receive)
            provider = self.creates[scope["path"]]
            await self._answer(scope, receive, send, handle_create(request, provider))
        else:
            await self.app(scope, receive, send)

    def serves(self, scope: Scope) -> bool:
        """Whether this request is one of the two shapes answered here."""
        return retrieve_batch_id(scope, self.prefixes) is not None or self._is_create(scope)

    def _is_create(self, scope: Scope) -> bool:
        return (scope["type"] == "http" and scope["method"] == "POST"
                and not scope.get("root_path") and scope["path"] in self.creates)

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send,
                      handler: Awaitable[Response]) -> None:
        try:
            response = await handler
        except RequestValidationError as exc:
            response = validation_error_response(exc)
        except BatchyardError as exc:
            response = error_response(exc, scope["path"])
        await response(scope, receive, send)


class HotPathFront:
    """The top of the app's middleware stack: hot requests take a short chain of their own.

    ``hot`` is the app's own middleware (metrics, request ids, input guard) around a
    :class:`BatchFastPath`; ``full`` is the framework's whole stack (which holds the same
    middleware, without the fast path) for every other request.
    """

    def __init__(self, full: ASGIApp, fast: BatchFastPath, hot: ASGIApp) -> None:
        self.full = full
        self.fast = fast
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast.serves(scope):
            await self.hot(scope, receive, send)
        else:
            await self.full(scope, receive, send)

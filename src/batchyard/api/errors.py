"""OpenAI's error envelope for every failure the API answers with.

``{"error": {"message", "type", "param", "code"}}`` for our own errors, FastAPI's validation
errors (answered 400, as OpenAI does for a bad body), unknown routes and unexpected crashes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from batchyard.errors import BatchyardError

logger = logging.getLogger(__name__)


def envelope(status: int, message: str, *, type_: str = "invalid_request_error",
             param: str | None = None, code: str | None = None,
             headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response in OpenAI's shape."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def render_error(exc: BatchyardError) -> Response:
    """Render any BatchyardError by its http_status / error_type / code / param."""
    headers = None
    retry_after = getattr(exc, "retry_after", None)
    if exc.http_status == 429 and retry_after:
        headers = {"retry-after": str(int(retry_after))}
    return envelope(exc.http_status, exc.message, type_=exc.error_type, param=exc.param,
                    code=exc.code, headers=headers)


def _param_of(loc: Sequence[Any]) -> str | None:
    # FastAPI prefixes the location with "body"/"query"/"path"; OpenAI names just the field.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def describe_validation_error(error: dict[str, Any]) -> tuple[str, str | None, str]:
    """(message, param, code) for one pydantic error, worded like OpenAI's 400s."""
    param = _param_of(error.get("loc", ()))
    kind = str(error.get("type", ""))
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    if kind in {"json_invalid", "json_type"}:
        return ("We could not parse the JSON body of your request. The API expects a JSON "
                "object in the body; what was sent was not valid JSON."), None, "invalid_json"
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        return (f"Invalid value for '{param}': {error.get('input')!r}. Supported values are: "
                f"{expected}."), param, "invalid_value"
    detail = str(error.get("msg", "Invalid value"))
    return f"Invalid value for '{param}': {detail}.", param, "invalid_value"


def validation_error_response(exc: RequestValidationError) -> Response:
    """A 400 in OpenAI's envelope describing the first validation error."""
    errors = list(exc.errors())
    if not errors:
        return envelope(400, "Invalid request.")
    message, param, code = describe_validation_error(errors[0])
    return envelope(400, message, param=param, code=code)


def error_response(exc: BatchyardError, path: str) -> Response:
    """Render a BatchyardError, logging the server-side ones (5xx)."""
    if exc.http_status >= 500:
        logger.warning("api.error", extra={"error": type(exc).__name__, "path": path})
    return render_error(exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc)


async def _on_batchyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BatchyardError)
    return error_response(exc, request.url.path)


def allowed_methods(request: Request) -> str | None:
    """Every method some route answers on this path (Starlette names only the first route's).

    Read from the table :func:`batchyard.api.app.mount` keeps; None for a path not in it.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for pattern, route_methods in getattr(request.app.state, "route_methods", ()):
        if pattern.match(path):
            methods |= route_methods
    return ", ".join(sorted(methods)) or None


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
        headers = exc.headers
        allow = allowed_methods(request) if exc.status_code == 405 else None
        if allow is not None:
            headers = {"Allow": allow}
        return envelope(exc.status_code, message, headers=headers)
    return envelope(exc.status_code, str(exc.detail), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure answer in OpenAI's envelope (crashes: see RequestIdMiddleware)."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(BatchyardError, _on_batchyard_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)

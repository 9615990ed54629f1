"""Signing in to the dashboard: the key lives in an HttpOnly cookie, checked on every page.

The cookie holds the key the user typed (never a URL parameter, never logged) and is
``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no other site can make the
browser send it) and ``Secure`` over HTTPS. Every request re-resolves it with the same
:func:`batchyard.services.keys.authenticate` the API uses, so a revoked key stops working at
once and a virtual key sees only its own batches.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.errors import AuthenticationError, BatchyardError
from batchyard.services import keys
from batchyard.services.keys import Principal

COOKIE = "batchyard_ui"
#: Cookie value for "no key" (keyless local mode: loopback callers act as the master).
NO_KEY = "-"
MAX_AGE = 12 * 3600
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class SignInRequired(BatchyardError):
    """Sign in to see the dashboard."""


class ForeignOrigin(BatchyardError):
    """This form was posted from another site."""

    http_status = 403


def is_local(request: Request) -> bool:
    """Whether the TCP peer is this machine (keyless local mode serves only those)."""
    return request.client is not None and request.client.host in LOOPBACK_HOSTS


async def resolve(svc: Any, request: Request, token: str | None) -> Principal:
    """The principal for ``token`` (None: no key), as the API would see it."""
    return await run_in_threadpool(keys.authenticate, svc, token, local_client=is_local(request))


async def current(svc: Any, request: Request) -> Principal:
    """The signed-in caller, or :class:`SignInRequired`."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise SignInRequired()
    try:
        return await resolve(svc, request, None if raw == NO_KEY else raw)
    except AuthenticationError as exc:
        raise SignInRequired() from exc


def check_origin(request: Request) -> None:
    """Refuse a form post whose Origin is another site (belt and braces over SameSite)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise ForeignOrigin()


def remember(response: Response, request: Request, token: str | None) -> None:
    """Set the session cookie on ``response``."""
    response.set_cookie(COOKIE, token or NO_KEY, max_age=MAX_AGE, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def forget(response: Response) -> None:
    """Clear the session cookie."""
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")

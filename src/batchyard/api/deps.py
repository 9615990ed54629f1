"""Request-scoped dependencies: the shared Services and the authenticated caller."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from batchyard.services import keys
from batchyard.services.container import Services
from batchyard.services.keys import Principal

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def services_of(request: Request) -> Services:
    """The Services built by the lifespan (or handed to ``create_app``)."""
    services: Services = request.app.state.services
    return services


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer ...`` or Azure's ``api-key`` header."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("api-key") or None


def is_local(request: Request) -> bool:
    """Whether the TCP peer is this machine (the only callers allowed without a master key)."""
    return request.client is not None and request.client.host in LOOPBACK_HOSTS


async def principal(request: Request) -> Principal:
    """The caller; 401 in OpenAI's envelope when the key is missing or wrong."""
    token = presented_key(request)
    svc = services_of(request)
    local = is_local(request)
    if token and token.startswith(keys.KEY_PREFIX):
        # Virtual keys need a database lookup; keep it off the event loop.
        return await run_in_threadpool(keys.authenticate, svc, token, local_client=local)
    return keys.authenticate(svc, token, local_client=local)


async def master(request: Request) -> Principal:
    """The caller, who must hold the master key (admin routes)."""
    who = await principal(request)
    keys.require_master(who)
    return who

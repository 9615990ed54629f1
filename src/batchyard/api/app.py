"""The FastAPI app: OpenAI-compatible Files and Batches routes, admin keys and health.

The same routes answer under ``/v1``, without a prefix, under ``/openai[/v1]`` and under
``/azure[/v1]`` and Azure's own wire paths ``/azure/openai[/v1]`` (what the ``AzureOpenAI``
client sends with ``azure_endpoint=<server>/azure``), and under ``/anthropic[/v1]``; the
provider prefixes force that provider for batches created through them (on ``/anthropic``
the endpoint ``/v1/messages`` is accepted too, for lines already in Anthropic's shape).

Security default: with no master key configured, the API only serves loopback clients (as the
master) and refuses to be created for a non-loopback bind address.
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp

from batchyard.api import admin, batches, costs, files, schedules
from batchyard.api.errors import install_error_handlers
from batchyard.api.fastpath import BatchFastPath, HotPathFront
from batchyard.api.middleware import InputGuard, RequestIdMiddleware
from batchyard.api.openapi import build_openapi
from batchyard.config import Settings
from batchyard.errors import ConfigError
from batchyard.metrics.asgi import MetricsMiddleware
from batchyard.ui.app import build_ui
from batchyard.ui.pipeline_metrics import build_metrics_router

logger = logging.getLogger(__name__)

#: (prefix, forced provider) pairs every Files/Batches route is mounted under.
ROUTE_PREFIXES: tuple[tuple[str, str | None], ...] = (
    ("/v1", None), ("", None), ("/openai/v1", "openai"), ("/openai", "openai"),
    ("/azure/v1", "azure"), ("/azure", "azure"),
    ("/azure/openai/v1", "azure"), ("/azure/openai", "azure"),
    ("/anthropic/v1", "anthropic"), ("/anthropic", "anthropic"),
)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only exposes the API to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_safety(settings: Settings) -> None:
    """Refuse a non-loopback bind without a master key (the open embedded mode is local-only)."""
    if settings.master_key is None and not is_loopback(settings.api.host):
        raise ConfigError(
            f"refusing to serve on {settings.api.host} without a master key: set "
            "BATCHYARD_MASTER_KEY, or bind 127.0.0.1 for keyless local use")


class BatchyardAPI(FastAPI):
    """FastAPI whose middleware stack starts with :class:`HotPathFront`.

    ``GET .../batches/{id}`` and ``POST .../batches`` run through the app's own middleware
    (the ones added with ``add_middleware``, same order) around :class:`BatchFastPath`,
    skipping the framework's server-error, telemetry, body-limit and exception layers,
    whose work those two handlers do themselves; everything else takes the full stack.
    """

    fast_path = True

    def build_middleware_stack(self) -> ASGIApp:
        full = super().build_middleware_stack()
        if not self.fast_path:
            return full
        fast = BatchFastPath(full, ROUTE_PREFIXES)
        hot: ASGIApp = fast
        for middleware in reversed(self.user_middleware):  # innermost first
            hot = middleware.cls(hot, *middleware.args, **middleware.kwargs)
        return HotPathFront(full, fast, hot)


_FROZEN: list[bool] = []


def _freeze_startup_objects() -> None:
    """Move what start-up built (modules, the app, the services) out of the collector's way.

    They live as long as the process, yet every full collection walked all ~180,000 of them
    (50-90 ms pauses under load, measured at start-up); frozen, a full collection during
    requests walks only what was made since. Done once per process: the first lifespan.
    """
    if not _FROZEN:
        _FROZEN.append(True)
        gc.collect()
        gc.freeze()


def create_app(settings: Settings, services: Any | None = None, *,
               fast_path: bool = True) -> FastAPI:
    """Build the API. Without ``services``, the lifespan builds (and closes) them.

    ``fast_path=False`` leaves every request to FastAPI's router (the parity test compares
    both ways of answering the two hottest calls).
    """
    check_bind_safety(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            yield
            return
        from batchyard.broker.nudge import BackgroundNudger, build_nudger
        from batchyard.services.container import build_services

        # Nudges leave after the response: the committed row is the truth, the sweep
        # re-sends a nudge lost in a crash.
        nudger = BackgroundNudger(build_nudger(settings))
        built = await anyio.to_thread.run_sync(
            functools.partial(build_services, settings, nudge=nudger))
        app.state.services = built
        _freeze_startup_objects()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(nudger.close)
            built.close()

    app = BatchyardAPI(title="batchyard", version="1", lifespan=lifespan, docs_url="/docs",
                       redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    app.fast_path = fast_path
    # Both ways of answering see the same refusals, ids and counts: these three wrap the
    # router here, and the fast path in its own short chain (BatchyardAPI).
    app.add_middleware(InputGuard, max_header_bytes=settings.api.max_header_bytes,
                       body_timeout=settings.api.body_read_timeout)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware)  # outermost: counts every answer, even a crash
    for prefix, provider in ROUTE_PREFIXES:
        documented = prefix == "/v1"
        # Batches first: their GET is the hottest route, and routes match in order.
        mount(app, batches.build_router(provider), prefix=prefix, include_in_schema=documented)
        mount(app, files.build_router(provider), prefix=prefix, include_in_schema=documented)
    mount(app, schedules.build_router())
    mount(app, admin.build_admin_router())
    mount(app, costs.build_costs_router())
    mount(app, admin.build_health_router())
    mount(app, build_metrics_router())
    app.mount("/ui", build_ui(app))
    app.openapi = build_openapi(app)  # type: ignore[method-assign]
    return app


def mount(app: FastAPI, router: APIRouter, *, prefix: str = "",
          include_in_schema: bool = True) -> None:
    """Include ``router`` and record its paths' methods (for the ``Allow`` header of a 405)."""
    table: list[tuple[re.Pattern[str], set[str]]] = getattr(app.state, "route_methods", [])
    for route in router.routes:
        if isinstance(route, APIRoute):
            table.append((compile_path(prefix + route.path)[0], set(route.methods or ())))
    app.state.route_methods = table
    app.include_router(router, prefix=prefix, include_in_schema=include_in_schema)


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-process serving: Settings from the environment."""
    return create_app(Settings())

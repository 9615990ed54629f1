"""The ASGI app, a real server on a background thread (for tests), and the CLI runner."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchyard.emulator.admin import admin_router
from batchyard.emulator.config import EmulatorConfig
from batchyard.emulator.errors import EmulatorError, error_body, surface_of
from batchyard.emulator.middleware import EmulatorMiddleware, QuietDrops
from batchyard.emulator.routes_anthropic import anthropic_router
from batchyard.emulator.routes_azure import azure_routers
from batchyard.emulator.routes_openai import openai_router
from batchyard.emulator.state import Emulator

logger = logging.getLogger(__name__)


def _render_error(request: Request, exc: EmulatorError) -> Response:
    from fastapi.responses import JSONResponse

    flavor = request.app.state.emulator.flavor
    return JSONResponse(error_body(exc, surface_of(request.url.path, flavor)),
                        status_code=exc.status,
                        headers=exc.headers or None)


async def _on_emulator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EmulatorError)
    return _render_error(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = "Not found." if exc.status_code == 404 else str(exc.detail)
    return _render_error(request, EmulatorError(exc.status_code, message))


def _quiet_uvicorn() -> None:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietDrops) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(QuietDrops())


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """The emulator as an ASGI app; ``app.state.emulator`` is its live :class:`Emulator`."""
    _quiet_uvicorn()
    config = config or EmulatorConfig()
    emulator = Emulator(config)
    app = FastAPI(title=f"batchyard emulator ({config.flavor})", docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    app.include_router(admin_router())
    if config.flavor == "azure":
        for router in azure_routers():
            app.include_router(router)
    elif config.flavor == "anthropic":
        app.include_router(anthropic_router())
    else:
        app.include_router(openai_router())
    app.add_exception_handler(EmulatorError, _on_emulator_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(EmulatorMiddleware, emulator=emulator)
    return app


class EmulatorServer:
    """A real uvicorn server on ``127.0.0.1:<free port>`` in a background thread.

    Use as a context manager; ``base_url`` is ``http://127.0.0.1:PORT`` and ``emulator``
    the live state (``stats()``, ``set_faults()``, ``reset()``).
    """

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self.app = create_app(self.config)
        self.emulator: Emulator = self.app.state.emulator
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        uv_config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                   timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self._run, name="emulator-server", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> EmulatorServer:
        """Start serving; returns once the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server and the batch runners; remove the emulator's temp files."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()
        self.emulator.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8900, flavor: str = "openai",
          **knobs: Any) -> None:
    """Run the emulator in the foreground (the ``batchyard emulator`` command)."""
    config = EmulatorConfig(flavor=flavor, **knobs)  # type: ignore[arg-type]
    app = create_app(config)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
    finally:
        app.state.emulator.close()

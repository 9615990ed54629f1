"""ASGI middleware counting API requests by route template and status, with latency."""

from __future__ import annotations

import re
import time
from typing import Any

from batchyard.metrics.counters import API_LATENCY, API_REQUESTS

Scope = dict[str, Any]
#: Object ids in a path (batch_..., file-..., key_..., sched_...): replaced by ``{id}`` when
#: no route template is known (the fast path answers ahead of the router).
_ID_SEGMENT = re.compile(r"^[a-z]+[_-][A-Za-z0-9_-]{6,}$")
#: The router's parameter names, so the fast path's answers share the routes' labels.
_PARAM_AFTER = {"batches": "batch_id", "files": "file_id", "keys": "key_id",
                "schedules": "schedule_id"}


def route_label(scope: Scope, status: int) -> str:
    """The route template of a request (``/v1/batches/{batch_id}``), bounded for the rest.

    Built from the path and the path parameters the router matched, so it does not depend on
    how the framework stores included routers and mounts.
    """
    path: str = scope.get("path", "")
    params = scope.get("path_params")
    if "endpoint" in scope and isinstance(params, dict):
        return _with_params(path, params)
    if status == 404:
        return "unmatched"
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if i and _ID_SEGMENT.match(seg):
            name = _PARAM_AFTER.get(segments[i - 1], "id")
            segments[i] = f"{{{name}}}"
    return "/".join(segments)


def _with_params(path: str, params: dict[str, Any]) -> str:
    segments = path.split("/")
    for name, value in params.items():
        text = str(value)
        if "/" in text and path.endswith(text):  # a {name:path} parameter: the whole tail
            segments = [*"/".join(segments)[:-len(text)].split("/")[:-1], f"{{{name}}}"]
            continue
        for i in range(len(segments) - 1, -1, -1):
            if segments[i] == text:
                segments[i] = f"{{{name}}}"
                break
    return "/".join(segments)


class MetricsMiddleware:
    """Counts every HTTP request when its response starts; observes time to the last byte."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope.get("method", "GET")
            route = route_label(scope, status)
            API_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            API_LATENCY.labels(method=method, route=route).observe(
                time.perf_counter() - started)

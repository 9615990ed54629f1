"""Admin and health routes: virtual keys (master key only), liveness, readiness, deployments."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.api.deps import master, services_of
from batchyard.api.inputs import load_json_object
from batchyard.api.wire import CreateKeyBody, json_response
from batchyard.services import costs, health, keys
from batchyard.services.keys import Principal


def build_admin_router() -> APIRouter:
    """``/admin/keys``: create (plain text shown once), list, revoke."""
    router = APIRouter(prefix="/admin")

    @router.post("/keys")
    async def create_key(request: Request, who: Principal = Depends(master)) -> Response:
        try:
            body = CreateKeyBody.model_validate(load_json_object(await request.body() or b"{}"))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        record, plaintext = await run_in_threadpool(
            keys.create_key, services_of(request), name=body.name,
            max_file_bytes=body.max_file_bytes, max_batches_in_flight=body.max_batches_in_flight,
            can_schedule=body.can_schedule)
        return json_response({**record.to_dict(), "key": plaintext})

    @router.get("/keys")
    def list_keys(request: Request, who: Principal = Depends(master)) -> Response:
        svc = services_of(request)
        data = costs.with_spend(svc, [k.to_dict() for k in keys.list_keys(svc)])
        return json_response({"object": "list", "data": data})

    @router.delete("/keys/{key_id}")
    def revoke_key(key_id: str, request: Request, who: Principal = Depends(master)) -> Response:
        return json_response(keys.revoke_key(services_of(request), key_id).to_dict())

    return router


def build_health_router() -> APIRouter:
    """``/health`` (no auth), ``/health/readiness`` (no auth), ``/health/deployments`` (master).

    Liveness also answers at ``/health/liveliness``, the path LiteLLM's deployments probe.
    """
    router = APIRouter(prefix="/health")

    @router.get("")
    @router.get("/liveness")
    @router.get("/liveliness")
    async def liveness() -> Response:
        return json_response(health.liveness())

    @router.get("/readiness")
    def readiness(request: Request) -> Response:
        report = health.readiness(services_of(request))
        return json_response(report, status_code=200 if report["status"] == "ready" else 503)

    @router.get("/deployments")
    def deployments(request: Request, who: Principal = Depends(master)) -> Response:
        results = health.check_deployments(services_of(request).deployments)
        return json_response({
            "object": "list", "data": [r.to_dict() for r in results],
            "healthy_count": sum(r.healthy for r in results),
            "unhealthy_count": sum(not r.healthy for r in results),
        })

    return router

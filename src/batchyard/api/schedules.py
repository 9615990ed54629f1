"""``/v1/schedules``: recurring batches for the master key and keys with ``can_schedule``.

Routes: POST (create), GET (list), GET /{id}, POST /{id}/pause, POST /{id}/resume,
DELETE /{id}, GET /{id}/runs. A virtual key sees only its own schedules, and its batches are
created under its own ownership.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.api.deps import principal, services_of
from batchyard.api.inputs import storable_json
from batchyard.api.wire import json_response, list_object, schedule_object, schedule_run_object
from batchyard.errors import PermissionDeniedError
from batchyard.services import schedules as schedule_service
from batchyard.services.container import Services
from batchyard.services.keys import Principal
from batchyard.services.notifications import check_webhook_url
from batchyard.services.schedules import ScheduleSpec


async def scheduler(who: Principal = Depends(principal)) -> Principal:
    """The caller, who must hold the master key or a key with ``can_schedule``."""
    if who.is_master or (who.key is not None and who.key.can_schedule):
        return who
    raise PermissionDeniedError("This key may not manage schedules (needs can_schedule).",
                                code="insufficient_permissions")


def _create(svc: Services, who: Principal, spec: ScheduleSpec) -> dict[str, Any]:
    if spec.webhook_url:
        check_webhook_url(svc.settings, spec.webhook_url)
    allow = who.is_master or svc.settings.schedules.allow_code_sources_for_keys
    record = schedule_service.create_schedule(svc, spec, owner=who.owner,
                                              allow_code_sources=allow)
    return schedule_object(record)


def build_router() -> APIRouter:
    """The schedules routes, mounted at ``/v1/schedules``."""
    router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

    @router.post("", dependencies=[Depends(storable_json)])
    async def create_schedule(spec: ScheduleSpec, request: Request,
                              who: Principal = Depends(scheduler)) -> Response:
        body = await run_in_threadpool(_create, services_of(request), who, spec)
        return json_response(body)

    @router.get("")
    def list_schedules(request: Request, who: Principal = Depends(scheduler)) -> Response:
        records = schedule_service.list_schedules(services_of(request), owner=who.owner)
        return json_response(list_object((schedule_object(r) for r in records),
                                         has_more=False))

    @router.get("/{schedule_id}")
    def get_schedule(schedule_id: str, request: Request,
                     who: Principal = Depends(scheduler)) -> Response:
        record = schedule_service.get_schedule(services_of(request), schedule_id,
                                               owner=who.owner)
        return json_response(schedule_object(record))

    @router.post("/{schedule_id}/pause")
    def pause_schedule(schedule_id: str, request: Request,
                       who: Principal = Depends(scheduler)) -> Response:
        record = schedule_service.pause_schedule(services_of(request), schedule_id,
                                                 owner=who.owner)
        return json_response(schedule_object(record))

    @router.post("/{schedule_id}/resume")
    def resume_schedule(schedule_id: str, request: Request,
                        who: Principal = Depends(scheduler)) -> Response:
        record = schedule_service.resume_schedule(services_of(request), schedule_id,
                                                  owner=who.owner)
        return json_response(schedule_object(record))

    @router.delete("/{schedule_id}")
    def delete_schedule(schedule_id: str, request: Request,
                        who: Principal = Depends(scheduler)) -> Response:
        record = schedule_service.delete_schedule(services_of(request), schedule_id,
                                                  owner=who.owner)
        return json_response({"id": record.id, "object": "schedule.deleted", "deleted": True})

    @router.get("/{schedule_id}/runs")
    def list_runs(schedule_id: str, request: Request, limit: int = Query(50, ge=1, le=1000),
                  who: Principal = Depends(scheduler)) -> Response:
        runs = schedule_service.list_runs(services_of(request), schedule_id, owner=who.owner,
                                          limit=limit)
        return json_response(list_object((schedule_run_object(r) for r in runs), has_more=False))

    return router

"""``/v1/batches``: create (recorded and enqueued, no provider call), list, retrieve, cancel."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.api.deps import principal, services_of
from batchyard.api.inputs import load_json_object
from batchyard.api.wire import (
    ANTHROPIC_ENDPOINTS,
    AZURE_ENDPOINTS,
    BATCH_ENDPOINTS,
    CreateBatchBody,
    batch_object,
    json_response,
    list_object,
    part_object,
)
from batchyard.domain.records import BatchRecord
from batchyard.errors import InvalidInputError
from batchyard.services import batches as batch_service
from batchyard.services import costs, keys, reports
from batchyard.services.container import Services
from batchyard.services.keys import Principal
from batchyard.services.notifications import check_webhook_url

logger = logging.getLogger(__name__)


def parse_create_body(raw: bytes, provider: str | None) -> CreateBatchBody:
    """Parse and validate the JSON body whatever its Content-Type (curl -d sends form type)."""
    data = load_json_object(raw)
    try:
        body = CreateBatchBody.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    allowed = BATCH_ENDPOINTS + (AZURE_ENDPOINTS if provider == "azure" else ()) + (
        ANTHROPIC_ENDPOINTS if provider == "anthropic" else ())
    if body.endpoint not in allowed:
        raise InvalidInputError(
            f"Invalid value for 'endpoint': {body.endpoint!r}. Supported values are: "
            f"{', '.join(BATCH_ENDPOINTS)}.", param="endpoint", code="invalid_value")
    return body


def create_in_service(svc: Services, who: Principal, body: CreateBatchBody,
                      provider: str | None) -> BatchRecord:
    """Check the key's capacity and record the batch (blocking: run it in a thread)."""
    webhook_url = (body.metadata or {}).get("webhook_url", "")
    if webhook_url.startswith(("http://", "https://")):  # anything else is never called
        check_webhook_url(svc.settings, webhook_url, param="metadata.webhook_url")
    keys.ensure_batch_capacity(svc, who)
    estimate = costs.check_key_budget(svc, who.owner, input_file_id=body.input_file_id,
                                      endpoint=body.endpoint, model=body.model,
                                      provider=provider)
    record = batch_service.create_batch(
        svc, owner=who.owner, input_file_id=body.input_file_id, endpoint=body.endpoint,
        completion_window=body.completion_window, metadata=body.metadata, model=body.model,
        provider=provider, estimate_pico=estimate)
    # Debug only: the service already logs each created batch at INFO (one line, not two).
    logger.debug("api.batch_created", extra={"batch_id": record.id})
    return record


async def handle_create(request: Request, provider: str | None) -> Response:
    """``POST <prefix>/batches``: the one handler, called by the route and the fast path."""
    who = await principal(request)
    body = parse_create_body(await request.body(), provider)
    record = await run_in_threadpool(create_in_service, services_of(request), who, body,
                                     provider)
    return json_response(batch_object(record))


async def handle_retrieve(request: Request, batch_id: str) -> Response:
    """``GET <prefix>/batches/{id}``: the one handler, called by the route and the fast path.

    The hot read path: one primary-key read (well under a millisecond) on the event loop costs
    less than the thread hop under the GIL, and authenticating inline skips a
    dependency-injection round (both measured in benchmarks/api_bench.py).
    """
    who = await principal(request)
    record = batch_service.get_batch(services_of(request), batch_id, owner=who.owner)
    return json_response(batch_object(record))


def build_router(provider: str | None) -> APIRouter:
    """The batches routes; ``provider`` forces openai/azure for batches created through them.

    Create and retrieve are also answered by :class:`~batchyard.api.fastpath.BatchFastPath`
    ahead of the router, through the same handlers: add nothing to those two routes (no
    ``Depends``) that is not inside their handler.
    """
    router = APIRouter()

    @router.post("/batches")
    async def create_batch(request: Request) -> Response:
        return await handle_create(request, provider)

    @router.get("/batches")
    def list_batches(request: Request, limit: int = Query(20, ge=1, le=100),
                     after: str | None = None, who: Principal = Depends(principal)) -> Response:
        page = batch_service.list_batches(services_of(request), owner=who.owner, limit=limit,
                                          after=after)
        return json_response(list_object((batch_object(b) for b in page.data),
                                         has_more=page.has_more))

    @router.get("/batches/{batch_id}")
    async def retrieve_batch(batch_id: str, request: Request) -> Response:
        return await handle_retrieve(request, batch_id)

    @router.get("/batches/{batch_id}/parts")
    def list_parts(batch_id: str, request: Request,
                   who: Principal = Depends(principal)) -> Response:
        # batchyard's extension: where each part went and what its provider says.
        parts = reports.list_parts(services_of(request), batch_id, owner=who.owner)
        return json_response(list_object((part_object(p) for p in parts), has_more=False))

    @router.post("/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str, request: Request,
                     who: Principal = Depends(principal)) -> Response:
        record = batch_service.cancel_batch(services_of(request), batch_id, owner=who.owner)
        return json_response(batch_object(record))

    return router

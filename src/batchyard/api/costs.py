"""Cost routes (master key): spend grouped by batch, key, model, deployment, schedule or day,
and key budgets. They read stored sums only; nothing is priced on a request."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.api.deps import master, services_of
from batchyard.api.wire import json_response
from batchyard.services import costs
from batchyard.services.keys import Principal

MAX_BUDGET_USD = 9_000_000


class KeyBudgetBody(BaseModel):
    """``POST /admin/keys/{id}/budget`` body (``max_budget_usd`` null clears the budget)."""

    model_config = ConfigDict(extra="forbid")

    #: Stored as integer pico-dollars in a 64-bit column: at most 9 million dollars.
    max_budget_usd: Annotated[Decimal, Field(ge=0, le=MAX_BUDGET_USD)] | None
    budget_period: str = "total"


def build_costs_router() -> APIRouter:
    """``GET /admin/costs``, ``GET /admin/costs/requests`` and ``POST /admin/keys/{id}/budget``."""
    router = APIRouter(prefix="/admin")

    @router.get("/costs")
    def report(request: Request, group_by: str = Query("model"),
               since: str | None = Query(None), until: str | None = Query(None),
               key_id: str | None = Query(None), batch_id: str | None = Query(None),
               who: Principal = Depends(master)) -> Response:
        return json_response(costs.report_object(
            services_of(request), group_by=group_by, since=costs.parse_time(since, "since"),
            until=costs.parse_time(until, "until"), owner=key_id, batch_id=batch_id))

    @router.get("/costs/requests")
    def request_costs(request: Request, batch_id: str = Query(...),
                      who: Principal = Depends(master)) -> Response:
        return json_response(costs.request_costs_object(services_of(request), batch_id))

    @router.post("/keys/{key_id}/budget")
    async def set_budget(key_id: str, request: Request,
                         who: Principal = Depends(master)) -> Response:
        try:
            body = KeyBudgetBody.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        view = await run_in_threadpool(costs.set_key_budget, services_of(request), key_id,
                                       max_budget_usd=body.max_budget_usd,
                                       period=body.budget_period)
        return json_response({"id": key_id, **costs.budget_fields(view)})

    return router

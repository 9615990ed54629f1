"""Cost routes (master key): spend grouped by batch, key, model, deployment, schedule or day,
and key budgets. They read stored sums only; nothing is priced on a request."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.api.deps import master, services_of
from batchyard.api.wire import json_response
from batchyard.errors import InvalidInputError
from batchyard.services import costs
from batchyard.services.keys import Principal


class KeyBudgetBody(BaseModel):
    """``POST /admin/keys/{id}/budget`` body (``max_budget_usd`` null clears the budget)."""

    model_config = ConfigDict(extra="forbid")

    max_budget_usd: Decimal | None
    budget_period: str = "total"


def _time(value: str | None, name: str) -> int | None:
    """Unix seconds from an integer or an ISO 8601 date/time (UTC when no zone)."""
    if value is None or value == "":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be unix seconds or an ISO 8601 date",
                                param=name, code="invalid_value") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def build_costs_router() -> APIRouter:
    """``GET /admin/costs`` and ``POST /admin/keys/{id}/budget``."""
    router = APIRouter(prefix="/admin")

    @router.get("/costs")
    def report(request: Request, group_by: str = Query("model"),
               since: str | None = Query(None), until: str | None = Query(None),
               key_id: str | None = Query(None), batch_id: str | None = Query(None),
               who: Principal = Depends(master)) -> Response:
        lines = costs.cost_report(services_of(request), group_by=group_by,
                                  since=_time(since, "since"), until=_time(until, "until"),
                                  owner=key_id, batch_id=batch_id)
        data = [{"group": line.group, "requests": line.requests, "priced": line.priced,
                 "unpriced": line.unpriced, "input_tokens": line.input_tokens,
                 "output_tokens": line.output_tokens, "cached_tokens": line.cached_tokens,
                 "cost": f"{line.cost_usd:f}", "currency": line.currency} for line in lines]
        total = sum((line.cost_usd for line in lines), Decimal(0))
        return json_response({"object": "list", "group_by": group_by, "data": data,
                              "total": f"{total:f}", "currency": "USD"})

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

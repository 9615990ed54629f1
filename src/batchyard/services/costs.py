"""Cost: pricing result rows at ingest, estimates before submit, budgets, reports.

Everything that prices runs in the workers (ingest, prepare) or the CLI; the API only
reads stored sums, except one estimate at create for a key that has a budget (the refusal
has to come before the batch exists).
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.orm import Session

from batchyard.config import Settings
from batchyard.db import costs as cost_db
from batchyard.db.models import BatchRow, FileRow, PartRow
from batchyard.deployments import DeploymentRegistry, load_deployments
from batchyard.domain.jsonl import OutputLine, iter_request_blocks
from batchyard.domain.lifecycle import OPEN_BATCH_STATUSES
from batchyard.domain.pricing import (
    Estimate,
    Price,
    PriceLookup,
    Unpriced,
    batch_cap_reached,
    budget_refusal,
    default_output_tokens,
    estimate_cost,
    from_pico,
    line_output_limit,
    request_cost_pico,
    to_pico,
)
from batchyard.domain.pricing import request_costs_object as request_costs_object_of
from batchyard.errors import InvalidInputError, NotFoundError
from batchyard.services.container import Services
from batchyard.services.prices import PriceBook

BUDGET_PERIODS = ("total", "monthly")
#: The largest budget a key can carry (its pico-dollars must fit a 64-bit integer).
MAX_BUDGET_USD = 9_000_000
#: What a cost report may be grouped by.
GROUPS = cost_db.GROUPS


class RowPricer:
    """Prices the result rows of one part as they are ingested (lookups cached per model).

    Per row this is one dictionary lookup and integer arithmetic: ingest handles tens of
    thousands of rows a second and pricing must not slow it down.
    """

    def __init__(self, svc: Services, part: PartRow, batch: BatchRow) -> None:
        self._book = svc.prices
        self._deployment = part.deployment
        self._fallback = batch.model
        self._at = float(batch.created_at)
        #: model -> (price or None, currency, source or the unpriced reason)
        self._cache: dict[str | None, tuple[Price | None, str | None, str | None]] = {}

    def lookup(self, model: str | None) -> PriceLookup:
        """The price of answers from ``model`` (the response's model, else the batch's)."""
        return self._book.lookup(deployment_id=self._deployment,
                                 model=model or self._fallback, at=self._at)

    def _entry(self, model: str | None) -> tuple[Price | None, str | None, str | None]:
        entry = self._cache.get(model)
        if entry is None:
            price = self.lookup(model)
            entry = ((None, None, price.reason) if isinstance(price, Unpriced)
                     else (price, price.currency, price.source))
            self._cache[model] = entry
        return entry

    def fill(self, row: dict[str, Any], line: OutputLine) -> None:
        """Set the cost columns of ``row``, the result row of ``line``."""
        (row["model"], row["cost_pico"], row["cost_currency"], row["price_source"],
         row["unpriced_reason"]) = self.values(line)

    def values(self, line: OutputLine) -> tuple[str | None, int | None, str | None,
                                                str | None, str | None]:
        """(model, cost_pico, cost_currency, price_source, unpriced_reason) of ``line``."""
        inp, out = line.input_tokens, line.output_tokens
        if not line.ok and not (inp or out):
            # An error without usage is not billed: neither priced nor unpriced.
            return line.model, None, None, None, None
        price, currency, source = self._entry(line.model)
        if price is None:
            return line.model, None, currency, None, source
        rates = price.pico_rates
        if rates is None or price.tiers or line.cache_write_tokens:
            cost = request_cost_pico(price, inp, out, line.cached_tokens,
                                     line.cache_write_tokens)
        else:
            cached = min(line.cached_tokens, inp)
            cost = (inp - cached) * rates[0] + cached * rates[1] + out * rates[2]
        return line.model, cost, currency, source, None

    def flat_rates(self, model: str | None
                   ) -> tuple[int, int, int, str | None, str | None] | None:
        """(input, cached input, output pico-dollar rates, currency, source) when answers
        from ``model`` are priced by those three rates alone (no long-prompt tiers, whole
        pico-dollar rates), so a row without cache writes costs
        ``(inp - cached) * input + cached * cached_input + out * output`` exactly as
        :meth:`values` computes it; else None (use :meth:`values`)."""
        price, currency, source = self._entry(model)
        if price is None or price.pico_rates is None or price.tiers or source is None:
            return None
        rates = price.pico_rates
        return rates[0], rates[1], rates[2], currency, source

    def columns(self, line: OutputLine) -> dict[str, Any]:
        """The cost columns of a result row for ``line``."""
        row: dict[str, Any] = {}
        self.fill(row, line)
        return row


# -- estimates -----------------------------------------------------------------------------

class Pricing(Protocol):
    """What an estimate needs: the deployments and their prices (``Services`` has both)."""

    deployments: DeploymentRegistry
    prices: PriceBook


@dataclass
class OfflinePricing:
    """Deployments and prices from Settings alone (no database): ``batchyard estimate``."""

    deployments: DeploymentRegistry
    prices: PriceBook

    @classmethod
    def from_settings(cls, settings: Settings) -> OfflinePricing:
        """Read ``config.yaml`` / the env deployments as the workers would."""
        registry = load_deployments(settings)
        return cls(registry, PriceBook(registry))


def price_for_group(svc: Pricing, model: str | None, provider: str | None,
                    at: float | None = None) -> PriceLookup:
    """The price a batch of ``model`` is expected to pay (its first deployment's)."""
    deps = svc.deployments.for_model(model, provider)
    dep_id = deps[0].id if deps else None
    return svc.prices.lookup(deployment_id=dep_id, model=model, provider=provider, at=at)


@dataclass
class TokenTally:
    """Estimated tokens of a run of requests."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, raws: Iterable[bytes], est_tokens: Iterable[int], default_out: int) -> None:
        """Count a block of request lines (input from the text, output from its limit)."""
        raws = list(raws)
        self.requests += len(raws)
        self.input_tokens += sum(est_tokens)
        self.output_tokens += sum(line_output_limit(raw, default_out) for raw in raws)


def estimate_chunks(svc: Pricing, chunks: Iterable[bytes], *, endpoint: str | None = None,
                    model: str | None = None, provider: str | None = None) -> Estimate:
    """Validate a JSONL input and estimate its cost at batch rates (nothing is sent).

    Input tokens: about four characters of request text per token; output tokens: each
    request's ``max_completion_tokens`` / ``max_output_tokens`` / ``max_tokens``, else a
    default (1,024; 0 for embeddings and moderations).
    """
    tally = TokenTally()
    found_model, found_endpoint = model, endpoint
    for block in iter_request_blocks(chunks, endpoint=endpoint):
        found_model = found_model or block.models[0]
        found_endpoint = found_endpoint or block.urls[0]
        tally.add(block.raws, block.est_tokens, default_output_tokens(found_endpoint))
    return estimate_cost(price_for_group(svc, found_model, provider),
                         requests=tally.requests, input_tokens=tally.input_tokens,
                         output_tokens=tally.output_tokens)


def estimate_pico(estimate: Estimate) -> int | None:
    """An estimate's cost in pico-dollars (None when unpriced)."""
    return None if estimate.cost is None else to_pico(estimate.cost)


# -- budgets -------------------------------------------------------------------------------

def period_start(period: str | None, now: float) -> int | None:
    """Unix time the budget period began (None: the whole history counts)."""
    if period != "monthly":
        return None
    day = dt.datetime.fromtimestamp(now, dt.UTC)
    return calendar.timegm((day.year, day.month, 1, 0, 0, 0))


def check_key_budget(svc: Services, key_id: str | None, *, input_file_id: str,
                     endpoint: str, model: str | None, provider: str | None) -> int | None:
    """Refuse a create that would take a key over its budget; returns the estimate.

    Only keys with ``max_budget_usd`` pay for the estimate here (one read of the input
    file); others return None and the workers record the estimate when they split it.
    """
    if key_id is None:
        return None
    with svc.sessions() as session:
        budget, period = cost_db.key_budget(session, key_id)
        if budget is None:
            return None
        file_row = session.get(FileRow, input_file_id)
    if file_row is None or file_row.storage_key is None or file_row.deleted:
        return None  # the create itself says the file is missing
    estimate = estimate_chunks(svc, svc.store.read(file_row.storage_key),
                               endpoint=endpoint, model=model, provider=provider)
    if estimate.cost is None:
        raise InvalidInputError(
            f"This key has a budget, and the batch cannot be priced: "
            f"{estimate.unpriced_reason}", param="input_file_id", code="budget_unpriced")
    with svc.sessions() as session:
        spend = cost_db.key_spend(session, key_id, since=period_start(period, time.time()),
                                  open_statuses=OPEN_BATCH_STATUSES)
    refusal = budget_refusal(budget=from_pico(budget), spent=from_pico(spend.spent_pico),
                             in_flight=from_pico(spend.in_flight_estimate_pico),
                             estimate=estimate.cost)
    if refusal is not None:
        raise InvalidInputError(refusal[0].upper() + refusal[1:] + ".",
                                param="input_file_id", code="budget_exceeded")
    return to_pico(estimate.cost)


#: A budget as callers give it (JSON number, CLI text or Decimal); None clears it.
BudgetAmount = Decimal | float | int | str | None


def parse_budget(max_budget_usd: BudgetAmount,
                 period: str | None) -> tuple[int | None, str | None]:
    """A key's budget as stored (pico-dollars, period); ValueError for a bad one."""
    if max_budget_usd is None:
        return None, None
    amount = Decimal(str(max_budget_usd))
    if not amount.is_finite() or amount < 0:
        raise ValueError("max_budget_usd must be a non-negative number")
    if amount > MAX_BUDGET_USD:
        # Stored as 64-bit pico-dollars.
        raise ValueError(f"max_budget_usd must be at most {MAX_BUDGET_USD:,}")
    period = period or "total"
    if period not in BUDGET_PERIODS:
        raise ValueError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}")
    return to_pico(amount), period


@dataclass(frozen=True)
class KeyBudgetView:
    """A key's budget and spend, as the admin sees it."""

    max_budget_usd: Decimal | None
    budget_period: str | None
    spent_usd: Decimal


def key_budgets(svc: Services, key_ids: Iterable[str]) -> dict[str, KeyBudgetView]:
    """Budget and spend (in the current period) of each key."""
    now = time.time()
    with svc.sessions() as session:
        budgets = {key_id: cost_db.key_budget(session, key_id) for key_id in key_ids}
        spent = cost_db.spend_by_key(session, since_by_key={
            key_id: period_start(period, now) for key_id, (_, period) in budgets.items()})
    return {key_id: KeyBudgetView(None if budget is None else from_pico(budget), period,
                                  from_pico(spent.get(key_id, 0)))
            for key_id, (budget, period) in budgets.items()}


# -- reports -------------------------------------------------------------------------------

def cost_report(svc: Services, *, group_by: str, since: int | None = None,
                until: int | None = None, owner: str | None = None,
                batch_id: str | None = None) -> list[cost_db.CostRow]:
    """Spend grouped by batch, key, model, deployment, schedule or day (stored sums)."""
    if group_by not in cost_db.GROUPS:
        raise InvalidInputError(f"group_by must be one of {', '.join(cost_db.GROUPS)}",
                                param="group_by", code="invalid_value")
    with svc.sessions() as session:
        return cost_db.cost_report(session, group_by=group_by, since=since, until=until,
                                   owner=owner, batch_id=batch_id)


def tally_pico(price: PriceLookup, tally: TokenTally) -> int | None:
    """The estimated cost of a run of requests in pico-dollars (None when unpriced)."""
    return estimate_pico(estimate_cost(price, requests=tally.requests,
                                       input_tokens=tally.input_tokens,
                                       output_tokens=tally.output_tokens))


def set_key_budget(svc: Services, key_id: str, *, max_budget_usd: BudgetAmount,
                   period: str | None = None) -> KeyBudgetView:
    """Set (or with ``max_budget_usd=None`` clear) a key's budget; returns it with spend."""
    try:
        budget, period = parse_budget(max_budget_usd, period)
    except (ValueError, ArithmeticError) as exc:
        raise InvalidInputError(str(exc), param="max_budget_usd",
                                code="invalid_value") from None
    with svc.sessions.begin() as session:
        if not cost_db.set_key_budget(session, key_id, budget, period):
            raise NotFoundError(f"No such key: {key_id}", param="key_id")
    return key_budgets(svc, [key_id])[key_id]


def with_spend(svc: Services, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Admin key listings with each key's budget and spend (decimal strings, USD)."""
    views = key_budgets(svc, [key["id"] for key in keys])
    return [{**key, **budget_fields(views[key["id"]])} for key in keys]


def budget_fields(view: KeyBudgetView) -> dict[str, Any]:
    """A key's budget view as wire fields."""
    return {"max_budget_usd": None if view.max_budget_usd is None else f"{view.max_budget_usd:f}",
            "budget_period": view.budget_period, "spent_usd": f"{view.spent_usd:f}"}


# -- the batch cap (metadata.max_cost_usd) -----------------------------------------------

CAP_METADATA_KEY = "max_cost_usd"
#: Parts whose requests were sent and whose results are not all in yet.
_SENT = ("uploading", "uploaded", "submitting", "submitted", "cancelling", "ingesting")


def batch_cap(metadata: dict[str, Any] | None) -> Decimal | None:
    """The batch's cap from ``metadata.max_cost_usd`` (None: no cap, or not a number)."""
    raw = (metadata or {}).get(CAP_METADATA_KEY)
    if raw is None:
        return None
    try:
        cap = Decimal(str(raw).strip())
    except ArithmeticError:
        return None
    return cap if cap.is_finite() and cap >= 0 else None


def cap_refusal(session: Session, batch: BatchRow, part: PartRow) -> str | None:
    """Why ``part`` must not be sent under the batch's cap (None: go ahead).

    Spent so far, plus the estimates of parts already sent whose results are not in,
    plus this part's estimate, must stay within the cap. Takes a lock on the batch row so
    parts of one batch are judged one at a time.
    """
    cap = batch_cap(batch.metadata_)
    if cap is None:
        return None
    session.get(BatchRow, batch.id, with_for_update=True)
    spent = cost_db.batch_spent(session, batch.id)
    in_flight = cost_db.unsubmitted_estimate(session, batch.id, _SENT)
    this = _part_estimate(batch, part)
    if not batch_cap_reached(cap=cap, actual=from_pico(spent),
                             unsubmitted_estimate=from_pico(in_flight + this)):
        return None
    return (f"the batch's cap of ${cap} (metadata.{CAP_METADATA_KEY}) would be passed: "
            f"${from_pico(spent):f} spent, ${from_pico(in_flight):f} estimated in flight, "
            f"${from_pico(this):f} estimated for the next part")


def _part_estimate(batch: BatchRow, part: PartRow) -> int:
    """A part's estimate; a retry part (made after the split) gets the batch's per request."""
    if part.estimate_pico is not None:
        return part.estimate_pico
    if not batch.estimate_pico or not batch.total:
        return 0
    return batch.estimate_pico * part.request_count // batch.total


def over_cap_after_ingest(session: Session, batch: BatchRow) -> str | None:
    """Why the batch must stop now that more results are in (None: within its cap)."""
    cap = batch_cap(batch.metadata_)
    if cap is None:
        return None
    spent = from_pico(cost_db.batch_spent(session, batch.id))
    if spent <= cap:
        return None
    return f"the batch spent ${spent:f}, over its cap of ${cap} (metadata.{CAP_METADATA_KEY})"


def budget_error(message: str) -> dict[str, Any]:
    """The batch's ``errors`` entry for a stop at its cap."""
    return {"object": "list", "data": [{"code": "budget_exceeded", "message": message,
                                        "param": f"metadata.{CAP_METADATA_KEY}",
                                        "line": None}]}


def stop_for_budget(session: Session, batch_id: str, message: str) -> bool:
    """Move the batch to ``cancelling`` with a ``budget_exceeded`` error (True: it moved).

    The cancel machinery then does the rest: parts not sent are not sent, parts in flight
    are cancelled at the provider (their results so far are still ingested), and the
    batch ends ``cancelled`` with every result already in.
    """
    from batchyard.db.transitions import transition_batch

    now = time.time()
    return transition_batch(session, batch_id, ("validating", "in_progress", "finalizing"),
                            "cancelling", reason=f"budget exceeded: {message}",
                            cancel_requested=True, cancelling_at=int(now),
                            errors=budget_error(message))


# -- the shapes the API and the CLI share ----------------------------------------------

def report_object(svc: Services, *, group_by: str, since: int | None = None,
                  until: int | None = None, owner: str | None = None,
                  batch_id: str | None = None) -> dict[str, Any]:
    """A cost report as JSON-ready data (amounts as exact decimal strings)."""
    lines = cost_report(svc, group_by=group_by, since=since, until=until, owner=owner,
                        batch_id=batch_id)
    data = [{"group": line.group, "requests": line.requests, "priced": line.priced,
             "unpriced": line.unpriced, "input_tokens": line.input_tokens,
             "output_tokens": line.output_tokens, "cached_tokens": line.cached_tokens,
             "cost": f"{line.cost_usd:f}", "currency": line.currency} for line in lines]
    total = sum((line.cost_usd for line in lines), Decimal(0))
    return {"object": "list", "group_by": group_by, "data": data, "total": f"{total:f}",
            "currency": "USD"}


def request_costs_object(svc: Services, batch_id: str) -> dict[str, Any]:
    """Each request's cost in a batch (``custom_id`` -> cost, currency, source, reason)."""
    with svc.sessions() as session:
        if session.get(BatchRow, batch_id) is None:
            raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
        rows = cost_db.request_costs(session, batch_id)
    return request_costs_object_of(batch_id, rows)


def parse_time(value: str | None, name: str) -> int | None:
    """Unix seconds from an integer or an ISO 8601 date/time (UTC when it has no zone)."""
    if value is None or value == "":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be unix seconds or an ISO 8601 date",
                                param=name, code="invalid_value") from None
    return int((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp())

"""Cost sums in SQL: per batch (stored on the batch row), per key, and grouped reports.

Every amount is integer pico-dollars (10^-12 USD), so sums are exact in every engine.
A batch's stored totals are recomputed (never incremented) from its parts' sums, which
ingest recomputes from the part's whole output file, so ingesting the same output twice, or
after a crash, cannot count anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from batchyard.db.models import ApiKeyRow, BatchRow, PartRow, ResultRow
from batchyard.db.results import part_totals_sum
from batchyard.db.schedules import ScheduleRunRow
from batchyard.domain.pricing import from_pico

#: Counted as unpriced: answers with usage but no known price (errors without usage are
#: not billed and count as neither).
_UNPRICED = func.count(ResultRow.unpriced_reason)


def refresh_batch_totals(session: Session, batch_id: str) -> None:
    """Set the batch's cost, priced/unpriced counts and token totals from its parts' sums
    (or, for batches with parts older than those sums, from its result rows).

    The batch row is locked first, so two parts ending together cannot write their sums in
    the wrong order (the later sum always sees the other part's committed rows)."""
    session.execute(select(BatchRow.id).where(BatchRow.id == batch_id).with_for_update())
    fast = part_totals_sum(session, batch_id)
    if fast is not None:
        cost, priced, unpriced, inp, out, cached = (
            fast[k] for k in ("cost_pico", "priced", "unpriced", "input_tokens",
                              "output_tokens", "cached_tokens"))
    else:
        totals = select(
            func.coalesce(func.sum(ResultRow.cost_pico), 0),
            func.count(ResultRow.cost_pico), _UNPRICED,
            func.coalesce(func.sum(ResultRow.input_tokens), 0),
            func.coalesce(func.sum(ResultRow.output_tokens), 0),
            func.coalesce(func.sum(ResultRow.cached_tokens), 0),
        ).where(ResultRow.batch_id == batch_id)
        cost, priced, unpriced, inp, out, cached = (int(v or 0) for v in
                                                   session.execute(totals).one())
    session.execute(update(BatchRow).where(BatchRow.id == batch_id).values(
        cost_pico=cost, priced_requests=priced, unpriced_requests=unpriced,
        input_tokens=inp, output_tokens=out, cached_tokens=cached, cost_currency="USD"))


# -- budgets -------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeySpend:
    """What a key has spent (in a period) and what its running batches are estimated at."""

    spent_pico: int
    in_flight_estimate_pico: int


def key_spend(session: Session, key_id: str, *, since: int | None,
              open_statuses: Sequence[str]) -> KeySpend:
    """Spend of ``key_id``'s batches created at or after ``since`` (all when None).

    Running batches count with what is still expected of them: their estimate less what
    they already spent (never below zero).
    """
    where = [BatchRow.owner_key_id == key_id]
    if since is not None:
        where.append(BatchRow.created_at >= since)
    remaining = func.coalesce(BatchRow.estimate_pico, 0) - BatchRow.cost_pico
    running = BatchRow.status.in_(list(open_statuses))
    row = session.execute(select(
        func.coalesce(func.sum(BatchRow.cost_pico), 0),
        func.coalesce(func.sum(case((and_(running, remaining > 0), remaining), else_=0)), 0),
    ).where(*where)).one()
    return KeySpend(int(row[0]), int(row[1]))


def key_budget(session: Session, key_id: str) -> tuple[int | None, str | None]:
    """The key's budget in pico-dollars and its period (``None, None``: no budget)."""
    row = session.execute(select(ApiKeyRow.max_budget_pico, ApiKeyRow.budget_period)
                          .where(ApiKeyRow.id == key_id)).one_or_none()
    return (None, None) if row is None else (row[0], row[1])


def set_key_budget(session: Session, key_id: str, budget_pico: int | None,
                   period: str | None) -> bool:
    """Store a key's budget; False when there is no such key."""
    done = session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(
        max_budget_pico=budget_pico, budget_period=period))
    return bool(getattr(done, "rowcount", 0))


def spend_by_key(session: Session, *, since_by_key: dict[str, int | None]) -> dict[str, int]:
    """Pico-dollars spent per key (each from its own period start)."""
    out: dict[str, int] = {}
    for key_id, since in since_by_key.items():
        stmt = select(func.coalesce(func.sum(BatchRow.cost_pico), 0)).where(
            BatchRow.owner_key_id == key_id)
        if since is not None:
            stmt = stmt.where(BatchRow.created_at >= since)
        out[key_id] = int(session.scalar(stmt) or 0)
    return out


# -- the batch cap -------------------------------------------------------------------------

def unsubmitted_estimate(session: Session, batch_id: str, statuses: Sequence[str]) -> int:
    """Estimated pico-dollars of the batch's parts not sent yet (in ``statuses``)."""
    return int(session.scalar(select(func.coalesce(func.sum(PartRow.estimate_pico), 0)).where(
        PartRow.batch_id == batch_id, PartRow.status.in_(list(statuses)))) or 0)


def batch_spent(session: Session, batch_id: str) -> int:
    """Pico-dollars of the batch's result rows so far (not the stored total: it may lag)."""
    return int(session.scalar(select(func.coalesce(func.sum(ResultRow.cost_pico), 0))
                              .where(ResultRow.batch_id == batch_id)) or 0)


# -- reports -------------------------------------------------------------------------------

GROUPS = ("batch", "part", "key", "model", "deployment", "schedule", "day")


@dataclass(frozen=True)
class CostRow:
    """One line of a cost report."""

    group: str | None
    requests: int
    priced: int
    unpriced: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_pico: int
    currency: str = "USD"

    @property
    def cost_usd(self) -> Decimal:
        """The group's cost, exact."""
        return from_pico(self.cost_pico)


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.to_timestamp(column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column, "unixepoch")


def _group_column(group_by: str, dialect: str) -> ColumnElement[Any]:
    columns: dict[str, Any] = {
        "batch": ResultRow.batch_id,
        "part": ResultRow.part_id,
        "key": func.coalesce(BatchRow.owner_key_id, literal("master")),
        "model": ResultRow.model,
        "deployment": PartRow.deployment,
        "schedule": ScheduleRunRow.schedule_id,
        "day": _day(ResultRow.created_at, dialect),
    }
    return columns[group_by]


def cost_report(session: Session, *, group_by: str, since: int | None = None,
                until: int | None = None, owner: str | None = None,
                batch_id: str | None = None) -> list[CostRow]:
    """Sums of result rows grouped by ``group_by`` (one of :data:`GROUPS`), costliest first.

    ``since`` / ``until`` bound the results' ingest time (unix seconds, until exclusive).
    """
    dialect = session.get_bind().dialect.name
    group = _group_column(group_by, dialect).label("grp")
    stmt: Select[Any] = select(
        group, func.count(), func.count(ResultRow.cost_pico), _UNPRICED,
        func.coalesce(func.sum(ResultRow.input_tokens), 0),
        func.coalesce(func.sum(ResultRow.output_tokens), 0),
        func.coalesce(func.sum(ResultRow.cached_tokens), 0),
        func.coalesce(func.sum(ResultRow.cost_pico), 0),
    ).select_from(ResultRow)
    if group_by == "key" or owner is not None:
        stmt = stmt.join(BatchRow, BatchRow.id == ResultRow.batch_id)
    if group_by == "deployment":
        stmt = stmt.outerjoin(PartRow, PartRow.id == ResultRow.part_id)
    if group_by == "schedule":
        stmt = stmt.outerjoin(ScheduleRunRow, ScheduleRunRow.batch_id == ResultRow.batch_id)
    if since is not None:
        stmt = stmt.where(ResultRow.created_at >= since)
    if until is not None:
        stmt = stmt.where(ResultRow.created_at < until)
    if owner is not None:
        stmt = stmt.where(BatchRow.owner_key_id == owner)
    if batch_id is not None:
        stmt = stmt.where(ResultRow.batch_id == batch_id)
    total = func.coalesce(func.sum(ResultRow.cost_pico), 0)
    stmt = stmt.group_by(group).order_by(total.desc(), group)
    out = []
    for r in session.execute(stmt):
        requests, priced, unpriced, inp, outp, cached, cost = (int(v) for v in r[1:])
        out.append(CostRow(None if r[0] is None else str(r[0]), requests, priced, unpriced,
                           inp, outp, cached, cost))
    return out



def request_costs(session: Session, batch_id: str) -> list[tuple[Any, ...]]:
    """(custom_id, cost_pico, currency, price_source, unpriced_reason) of a batch's results."""
    return [tuple(row) for row in session.execute(
        select(ResultRow.custom_id, ResultRow.cost_pico, ResultRow.cost_currency,
               ResultRow.price_source, ResultRow.unpriced_reason)
        .where(ResultRow.batch_id == batch_id))]

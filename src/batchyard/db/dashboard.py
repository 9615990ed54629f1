"""Aggregate reads for the dashboard and the scrape-time metrics.

Every function is one or a few SELECTs over indexed columns, run on a connection the
caller opens (:func:`connect`), so a page or a scrape costs a handful of round trips however
large the tables are. Results are plain dataclasses and dicts: nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, String, and_, case, cast, func, or_, select

from batchyard.db.engine import is_sqlite
from batchyard.db.models import BatchRow, DeploymentStateRow, EventRow, PartRow, ResultRow
from batchyard.domain.lifecycle import LIVE_PART_STATUSES, OPEN_BATCH_STATUSES, PartStatus

#: Columns of a batch shown in the list (no errors JSON, no per-token details).
_LIST_COLUMNS = (BatchRow.id, BatchRow.status, BatchRow.created_at, BatchRow.model,
                 BatchRow.endpoint, BatchRow.total, BatchRow.completed, BatchRow.failed,
                 BatchRow.metadata_.label("metadata"), BatchRow.owner_key_id,
                 BatchRow.completed_at, BatchRow.failed_at, BatchRow.cancelled_at,
                 BatchRow.expired_at, BatchRow.cost_pico, BatchRow.priced_requests,
                 BatchRow.estimate_pico)


def connect(engine: Engine) -> Connection:
    """A read connection (autocommit on PostgreSQL: each SELECT sees committed data)."""
    conn = engine.connect()
    if not is_sqlite(engine):
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


_ID = re.compile(r"^batch_[0-9a-f]{24,32}$")
#: Stored money is in pico-dollars (10^-12 USD).
PICO = 10**12


@dataclass
class PipelineState:
    """Counts the metrics endpoint exposes, read in one go at scrape time."""

    batches: dict[str, int] = field(default_factory=dict)
    parts: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    oldest_batch_created: float | None = None
    oldest_part_created: float | None = None
    #: deployment -> (requests the provider reported done, requests in live parts)
    progress: dict[str, tuple[int, int]] = field(default_factory=dict)
    spend: float | None = None


def pipeline_state(conn: Connection) -> PipelineState:
    """Batches by status, live parts by status and deployment, request totals, oldest work."""
    state = PipelineState()
    for status, count in conn.execute(
            select(BatchRow.status, func.count()).group_by(BatchRow.status)):
        state.batches[status] = int(count)
    # Live parts only, in one pass: finished ones are history that grows without bound (a
    # full count of them cost most of a scrape at 100,000 parts); their requests are in
    # ``requests``.
    live = select(PartRow.status, PartRow.deployment, func.count(), func.min(PartRow.created_at),
                  func.sum(PartRow.provider_done), func.sum(PartRow.request_count)).where(
        PartRow.status.in_(LIVE_PART_STATUSES)).group_by(PartRow.status, PartRow.deployment)
    for status, dep, count, oldest, done, total in conn.execute(live):
        state.parts[(status, dep or "")] = int(count)
        if oldest is not None and (state.oldest_part_created is None
                                   or oldest < state.oldest_part_created):
            state.oldest_part_created = float(oldest)
        prev = state.progress.get(dep or "", (0, 0))
        state.progress[dep or ""] = (prev[0] + int(done or 0), prev[1] + int(total or 0))
    open_total = func.sum(BatchRow.total).filter(BatchRow.status.in_(OPEN_BATCH_STATUSES))
    row = conn.execute(select(
        func.coalesce(func.sum(BatchRow.completed), 0), func.coalesce(func.sum(BatchRow.failed), 0),
        func.coalesce(open_total, 0),
        func.min(BatchRow.created_at).filter(BatchRow.status.in_(OPEN_BATCH_STATUSES)),
        func.coalesce(func.sum(BatchRow.cost_pico), 0))).one()
    state.requests = {"succeeded": int(row[0]), "failed": int(row[1]), "pending": int(row[2])}
    state.oldest_batch_created = float(row[3]) if row[3] is not None else None
    state.spend = int(row[4]) / PICO
    return state


@dataclass(frozen=True)
class BatchFilter:
    """What the batch list shows: whose batches, which status, a search text."""

    owner: str | None = None
    status: str | None = None
    query: str | None = None
    limit: int = 50


def _filtered(stmt: Any, flt: BatchFilter, *, with_status: bool = True) -> Any:
    if flt.owner is not None:
        stmt = stmt.where(BatchRow.owner_key_id == flt.owner)
    if with_status and flt.status:
        stmt = stmt.where(BatchRow.status == flt.status)
    if flt.query and _ID.match(flt.query.strip()):  # a whole id: one primary-key lookup
        stmt = stmt.where(BatchRow.id == flt.query.strip())
    elif flt.query:
        text = flt.query.strip()
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(cast(BatchRow.metadata_, String).ilike(pattern, escape="\\"),
                              BatchRow.id.ilike(pattern, escape="\\")))
    return stmt


def list_batches(conn: Connection, flt: BatchFilter) -> list[dict[str, Any]]:
    """The newest batches matching ``flt``, each with live progress from its parts."""
    stmt = _filtered(select(*_LIST_COLUMNS), flt).order_by(
        BatchRow.created_at.desc(), BatchRow.id.desc()).limit(flt.limit)
    return _with_progress(conn, [dict(r) for r in conn.execute(stmt).mappings()])


def search_batches(conn: Connection, flt: BatchFilter, *, cap: int = 20_000
                   ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A text search in one scan: the newest matches and the matches' counts by status.

    The search cannot use an index, so the list and the counts share one pass over the
    table (at most ``cap`` matches are counted), then the shown rows are read by id.
    """
    unfiltered = BatchFilter(owner=flt.owner, query=flt.query)
    stmt = _filtered(select(BatchRow.id, BatchRow.status, BatchRow.created_at), unfiltered)
    matches = conn.execute(stmt.limit(cap)).all()
    counts: dict[str, int] = {}
    for _, status, _ in matches:
        counts[status] = counts.get(status, 0) + 1
    shown = [m for m in matches if not flt.status or m[1] == flt.status]
    shown.sort(key=lambda m: (m[2], m[0]), reverse=True)
    ids = [m[0] for m in shown[:flt.limit]]
    by_id = {r["id"]: dict(r) for r in conn.execute(
        select(*_LIST_COLUMNS).where(BatchRow.id.in_(ids))).mappings()} if ids else {}
    return _with_progress(conn, [by_id[i] for i in ids if i in by_id]), counts


def _with_progress(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    progress = live_progress(conn, [r["id"] for r in rows if r["status"] in OPEN_BATCH_STATUSES])
    for r in rows:
        r["done_live"] = progress.get(r["id"], 0)
        r["cost"] = r["cost_pico"] / PICO if r["priced_requests"] else None
        r["estimate"] = r["estimate_pico"] / PICO if r["estimate_pico"] is not None else None
    return rows


def part_done() -> Any:
    """Requests of a part that are done: all of an ingested part's, else the provider's count
    at the last poll."""
    return case((PartRow.status == PartStatus.INGESTED, PartRow.request_count),
                else_=PartRow.provider_done)


def live_progress(conn: Connection, batch_ids: Sequence[str]) -> dict[str, int]:
    """Requests done so far per open batch: finished parts' counts plus live provider counts."""
    if not batch_ids:
        return {}
    stmt = (select(PartRow.batch_id, func.sum(part_done()))
            .where(PartRow.batch_id.in_(batch_ids)).group_by(PartRow.batch_id))
    return {bid: int(done or 0) for bid, done in conn.execute(stmt)}


def status_counts(conn: Connection, flt: BatchFilter) -> dict[str, int]:
    """How many batches per status (for the filter), with the owner and search applied."""
    stmt = _filtered(select(BatchRow.status, func.count()), flt, with_status=False)
    return {s: int(n) for s, n in conn.execute(stmt.group_by(BatchRow.status))}


def batch_parts(conn: Connection, batch_id: str) -> list[dict[str, Any]]:
    """A batch's parts in order, with deployment, provider ids, status and live counts."""
    stmt = (select(PartRow.id, PartRow.seq, PartRow.attempt, PartRow.deployment, PartRow.status,
                   PartRow.provider_batch_id, PartRow.provider_status, PartRow.request_count,
                   part_done().label("done"), PartRow.last_error, PartRow.created_at,
                   PartRow.updated_at)
            .where(PartRow.batch_id == batch_id).order_by(PartRow.seq))
    return [dict(r) for r in conn.execute(stmt).mappings()]


def batch_events(conn: Connection, batch_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """The batch's status history (batch and part transitions), oldest first."""
    stmt = (select(EventRow.entity, EventRow.part_id, EventRow.from_status, EventRow.to_status,
                   EventRow.at, EventRow.reason)
            .where(EventRow.batch_id == batch_id).order_by(EventRow.at, EventRow.id).limit(limit))
    return [dict(r) for r in conn.execute(stmt).mappings()]


def failed_by_code(conn: Connection, batch_id: str) -> list[dict[str, Any]]:
    """Failed requests grouped by error code: how many, first line, a sample message."""
    code = func.coalesce(ResultRow.error_code, cast(ResultRow.status_code, String), "unknown")
    stmt = (select(code.label("code"), func.count().label("count"),
                   func.min(ResultRow.line_no).label("first_line"),
                   func.min(ResultRow.error_message).label("message"))
            .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(False))
            .group_by(code).order_by(func.count().desc()))
    return [dict(r) for r in conn.execute(stmt).mappings()]


RESULT_COLUMNS = ("line_no", "custom_id", "ok", "status_code", "error_code", "error_message",
                  "input_tokens", "output_tokens", "response_body")


def iter_results(conn: Connection, batch_id: str, *, chunk: int = 1000
                 ) -> Iterator[dict[str, Any]]:
    """Every result row of a batch in input-line order, read in chunks (keyset on line_no)."""
    after = -1
    columns = [getattr(ResultRow, name) for name in RESULT_COLUMNS]
    while True:
        stmt = (select(*columns).where(ResultRow.batch_id == batch_id, ResultRow.line_no > after)
                .order_by(ResultRow.line_no).limit(chunk))
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1]["line_no"]


def deployment_load(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per deployment: parts in flight, tokens they hold (quota in use), block time."""
    live = PartRow.status.in_(LIVE_PART_STATUSES)
    out: dict[str, dict[str, Any]] = {}
    for dep, parts, tokens in conn.execute(
            select(PartRow.deployment, func.count(), func.sum(PartRow.estimated_tokens))
            .where(and_(live, PartRow.deployment.is_not(None))).group_by(PartRow.deployment)):
        out[str(dep)] = {"parts": int(parts), "tokens": int(tokens or 0), "blocked_until": None}
    for dep_id, until in conn.execute(
            select(DeploymentStateRow.deployment_id, DeploymentStateRow.blocked_until)):
        out.setdefault(dep_id, {"parts": 0, "tokens": 0, "blocked_until": None})
        out[dep_id]["blocked_until"] = until
    return out

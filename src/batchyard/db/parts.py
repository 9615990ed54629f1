"""The parts and requests tables: every statement that reads or writes a part (one provider
batch) or the input lines it carries (status moves are in :mod:`batchyard.db.transitions`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from batchyard.db.models import (
    BatchRow,
    DeploymentStateRow,
    EventRow,
    PartRow,
    RequestRow,
    ResultRow,
)
from batchyard.domain.lifecycle import LIVE_PART_STATUSES, PartStatus


def get_part(session: Session, part_id: str) -> PartRow | None:
    """The part row (fresh from the database)."""
    return session.get(PartRow, part_id, populate_existing=True)


def parts_of(session: Session, batch_id: str) -> list[PartRow]:
    """Every part of a batch (retries included), in creation order."""
    return list(session.scalars(select(PartRow).where(PartRow.batch_id == batch_id)
                                .order_by(PartRow.seq)))


def live_part_count(session: Session, batch_id: str) -> int:
    """How many of a batch's parts still need work."""
    stmt = select(func.count()).select_from(PartRow).where(
        PartRow.batch_id == batch_id, PartRow.status.in_(LIVE_PART_STATUSES))
    return int(session.scalar(stmt) or 0)


def add_part(session: Session, *, part_id: str, batch_id: str, seq: int, attempt: int,
             request_count: int, byte_size: int, estimated_tokens: int, now: float,
             reason: str, estimate_pico: int | None = None) -> None:
    """A new ``pending`` part (due at once) with its creation event."""
    session.add(PartRow(id=part_id, batch_id=batch_id, seq=seq, attempt=attempt,
                        status=PartStatus.PENDING.value, request_count=request_count,
                        byte_size=byte_size, estimated_tokens=estimated_tokens,
                        estimate_pico=estimate_pico,
                        next_poll_at=now, created_at=now, updated_at=now))
    session.add(EventRow(batch_id=batch_id, part_id=part_id, entity="part", from_status=None,
                         to_status=PartStatus.PENDING.value, at=now, reason=reason))
    session.flush()


def next_seq(session: Session, batch_id: str) -> int:
    """The sequence number of the batch's next part."""
    return int(session.scalar(select(func.max(PartRow.seq))
                              .where(PartRow.batch_id == batch_id)) or 0) + 1


def failed_part_errors(session: Session, batch_id: str) -> list[dict[str, Any]]:
    """The provider errors of the batch's failed parts (one generic error for a part that
    failed without saying why)."""
    errors: list[dict[str, Any]] = []
    stmt = select(PartRow.provider_errors).where(PartRow.batch_id == batch_id,
                                                 PartRow.status == PartStatus.FAILED)
    for blob in session.scalars(stmt):
        errors.extend((blob or {}).get("data") or [{"code": "provider_failed",
                                                    "message": "the provider batch failed"}])
    return errors


# ---- scheduling and leases ------------------------------------------------------------

def set_next_poll(session: Session, part_id: str, when: float, *,
                  error: str | None = None) -> None:
    """When the pipeline should next act on the part (also a lease); ``error`` notes why it
    waits."""
    values: dict[str, Any] = {"next_poll_at": when}
    if error is not None:
        values["last_error"] = error[:1000]
    session.execute(update(PartRow).where(PartRow.id == part_id).values(**values)
                    .execution_options(synchronize_session=False))


def _pollable(statuses: Sequence[str], now: float) -> list[ColumnElement[bool]]:
    """Parts at ``statuses`` whose poll time has come and whose deployment's polls are not
    paused (the provider answered 429)."""
    paused = exists().where(DeploymentStateRow.deployment_id == PartRow.deployment,
                            DeploymentStateRow.poll_paused_until > now)
    return [PartRow.status.in_(list(statuses)), PartRow.next_poll_at <= now, ~paused]


def count_due_polls(session: Session, statuses: Sequence[str], *, now: float) -> int:
    """How many parts a poll could claim now."""
    return int(session.scalar(select(func.count()).select_from(PartRow)
                              .where(*_pollable(statuses, now))) or 0)


#: What a poll needs of a part, returned by its claim along with the batch's cancel flag.
POLL_COLUMNS = (PartRow.id, PartRow.batch_id, PartRow.seq, PartRow.status, PartRow.deployment,
                PartRow.provider_batch_id, PartRow.provider_status, PartRow.provider_done,
                PartRow.provider_completed, PartRow.provider_failed, PartRow.poll_interval,
                PartRow.request_count)


def claim_polls(conn: Connection, statuses: Sequence[str], *, now: float, lease: float,
                limit: int, skip_locked: bool) -> list[Row[Any]]:
    """Take up to ``limit`` due parts at ``statuses``, pushing their next poll out by
    ``lease``, and return them with their batch's ``cancel_requested``: one statement.

    ``FOR UPDATE SKIP LOCKED`` where the database has it, so two workers' claims never
    take the same part (SQLite has one writer: its claim is a plain UPDATE).
    """
    due = (select(PartRow.id).where(*_pollable(statuses, now))
           .order_by(PartRow.next_poll_at).limit(limit))
    if skip_locked:
        due = due.with_for_update(skip_locked=True, of=PartRow)
    # A subquery, not UPDATE ... FROM: SQLite's RETURNING may not name a FROM table.
    cancel = (select(BatchRow.cancel_requested).where(BatchRow.id == PartRow.batch_id)
              .correlate(PartRow).scalar_subquery())
    stmt = (update(PartRow).where(PartRow.id.in_(due.scalar_subquery()))
            .values(next_poll_at=now + lease)
            .returning(*POLL_COLUMNS, cancel.label("cancel_requested")))
    return list(conn.execute(stmt))


def record_polls(conn: Connection, statuses: Sequence[str],
                 writes: Sequence[dict[str, Any]]) -> None:
    """Store what polls learned, one ``{"id": part_id, column: value ...}`` per part, while
    each part is still at one of ``statuses``; parts writing the same columns share one
    executemany UPDATE."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for write in writes:
        columns = tuple(sorted(k for k in write if k != "id"))
        groups.setdefault(columns, []).append(
            {"p_id": write["id"], **{f"v_{k}": write[k] for k in columns}})
    for columns, params in groups.items():
        stmt = (update(PartRow)
                # OR of equalities: an expanding IN cannot be used with executemany.
                .where(PartRow.id == bindparam("p_id"),
                       or_(*(PartRow.status == status for status in statuses)))
                .values({k: bindparam(f"v_{k}") for k in columns}))
        conn.execute(stmt, params)


def overdue_part_ids(session: Session, statuses: Iterable[str], *, before: float,
                     limit: int = 500) -> list[str]:
    """Parts at ``statuses`` whose lease ran out before ``before`` (the sweep)."""
    return list(session.scalars(
        select(PartRow.id).where(PartRow.status.in_(list(statuses)),
                                 PartRow.next_poll_at <= before).limit(limit)))


def enqueued_tokens(session: Session) -> dict[str, int]:
    """Estimated tokens per deployment over live parts that have left ``pending``."""
    rows = session.execute(
        select(PartRow.deployment, func.sum(PartRow.estimated_tokens))
        .where(PartRow.status.in_(LIVE_PART_STATUSES), PartRow.deployment.is_not(None),
               PartRow.status != PartStatus.PENDING)
        .group_by(PartRow.deployment)).all()
    return {str(dep): int(tokens or 0) for dep, tokens in rows if dep}


# ---- requests -------------------------------------------------------------------------

def iter_request_bodies(session: Session, part_id: str) -> Iterator[str]:
    """The part's request lines in input order, streamed."""
    stmt = (select(RequestRow.body).where(RequestRow.part_id == part_id)
            .order_by(RequestRow.line_no).execution_options(yield_per=2_000))
    yield from session.scalars(stmt)


def request_index(session: Session, part_id: str) -> dict[str, tuple[int, int]]:
    """custom_id -> (line_no, attempt) of every request of the part."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Straight from the driver's cursor: no Row objects for 50,000+ rows (half the time).
        raw: Any = connection.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("SELECT custom_id, line_no, attempt FROM requests WHERE part_id = %s",
                        (part_id,))
            return {cid: (line, attempt) for cid, line, attempt in cur.fetchall()}
    stmt = select(RequestRow.custom_id, RequestRow.line_no, RequestRow.attempt).where(
        RequestRow.part_id == part_id)
    return {cid: (line, attempt) for cid, line, attempt in session.execute(stmt)}


def lookup_requests(session: Session, batch_id: str, part_id: str,
                    custom_ids: list[str]) -> dict[str, tuple[int, int]]:
    """custom_id -> (line_no, attempt) of this part's requests among ``custom_ids``."""
    # Keyed on the unique (batch_id, custom_id) index; the part is checked here, not in SQL,
    # so the planner never scans the whole part once per batch of lines.
    stmt = select(RequestRow.custom_id, RequestRow.line_no, RequestRow.attempt,
                  RequestRow.part_id).where(RequestRow.batch_id == batch_id,
                                            RequestRow.custom_id.in_(custom_ids))
    return {cid: (line, attempt) for cid, line, attempt, owner in session.execute(stmt)
            if owner == part_id}


def request_ids(session: Session, part_id: str, *, unanswered_below: int | None = None
                ) -> list[int]:
    """Ids of the part's requests in input order; with ``unanswered_below``, only those
    without a result whose attempt is below it (the ones a retry may take)."""
    stmt = select(RequestRow.id).where(RequestRow.part_id == part_id)
    if unanswered_below is not None:
        has_result = exists().where(ResultRow.batch_id == RequestRow.batch_id,
                                    ResultRow.custom_id == RequestRow.custom_id)
        stmt = stmt.where(RequestRow.attempt < unanswered_below, ~has_result)
    return list(session.scalars(stmt.order_by(RequestRow.line_no)))


def move_requests(session: Session, ids: list[int], part_id: str, *, bump: bool) -> int:
    """Give requests to a new part (``bump``: one more attempt); returns their body bytes."""
    size = 0
    for i in range(0, len(ids), 1_000):
        chunk = ids[i:i + 1_000]
        size += int(session.scalar(select(func.sum(func.length(RequestRow.body)))
                                   .where(RequestRow.id.in_(chunk))) or 0)
        values: dict[str, Any] = {"part_id": part_id, "state": "pending"}
        if bump:
            values["attempt"] = RequestRow.attempt + 1
        session.execute(update(RequestRow).where(RequestRow.id.in_(chunk)).values(**values)
                        .execution_options(synchronize_session=False))
    return size


def count_requests(session: Session, batch_id: str) -> int:
    """How many input lines the batch has."""
    return int(session.scalar(select(func.count()).select_from(RequestRow)
                              .where(RequestRow.batch_id == batch_id)) or 0)



def entered_at(session: Session, part_id: str, status: str) -> float | None:
    """When the part last entered ``status`` (from its event rows)."""
    return session.scalar(select(func.max(EventRow.at)).where(EventRow.part_id == part_id,
                                                              EventRow.to_status == status))


def custom_ids(session: Session, part_id: str) -> set[str]:
    """The custom_ids of the part's requests."""
    return set(session.scalars(select(RequestRow.custom_id)
                               .where(RequestRow.part_id == part_id)))


def provider_batches_of_others(session: Session, part_id: str,
                               batch_ids: list[str]) -> set[str]:
    """Which of ``batch_ids`` other parts already hold as their provider batch."""
    if not batch_ids:
        return set()
    return {str(bid) for bid in session.scalars(
        select(PartRow.provider_batch_id).where(PartRow.provider_batch_id.in_(batch_ids),
                                                PartRow.id != part_id))}


def park_part(session: Session, part_id: str, status: str, until: float,
              message: str) -> bool:
    """Leave a part at ``status`` until ``until`` with ``message`` noted (an event row with
    the same from/to status records why). False: the part is no longer at ``status``."""
    row = session.get(PartRow, part_id)
    if row is None or row.status != status:
        return False
    row.last_error = message[:1000]
    row.next_poll_at = until
    session.add(EventRow(batch_id=row.batch_id, part_id=row.id, entity="part",
                         from_status=row.status, to_status=row.status, at=time.time(),
                         reason=message))
    return True

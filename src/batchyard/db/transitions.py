"""Compare-and-set status writes, each with its event row.

``UPDATE ... WHERE id = :id AND status IN (:expected)``: a write only lands when the row is
still where the caller last saw it, so two workers acting on one nudge cannot both win. A
write the lifecycle forbids (:mod:`batchyard.domain.lifecycle`) is a bug in the caller, not a
race: it raises :class:`~batchyard.errors.IllegalTransitionError` and writes nothing.

A batch's stage and ``due_at`` are written by the same statement as its status, from the
lifecycle's move table (:data:`~batchyard.domain.lifecycle.BATCH_MOVES`); callers never
set them by hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from batchyard.db.models import BatchRow, EventRow, PartRow
from batchyard.domain.lifecycle import (
    BatchStage,
    BatchStatus,
    PartStatus,
    batch_move,
    can_transition_batch,
    can_transition_part,
    due_at,
)
from batchyard.errors import IllegalTransitionError

_Row = TypeVar("_Row", BatchRow, PartRow)


def _expected(statuses: str | Iterable[str]) -> list[str]:
    return [statuses] if isinstance(statuses, str) else list(statuses)


def _refuse(entity: str, object_id: str, current: str, to_status: str) -> IllegalTransitionError:
    return IllegalTransitionError(f"illegal {entity} transition {current} -> {to_status}",
                                  code="illegal_transition", object_id=object_id)


def transition_batch(session: Session, batch_id: str, expected: str | Iterable[str],
                     to_status: BatchStatus | str, *, reason: str | None = None,
                     **values: Any) -> bool:
    """Move a batch from one of ``expected`` to ``to_status``; False when it had moved on.

    The batch's stage and ``due_at`` follow from the move (the lifecycle's table). Raises
    IllegalTransitionError when the batch is where the caller expected but the lifecycle
    does not allow the move.
    """
    if "stage" in values or "due_at" in values:
        raise TypeError("a batch's stage and due_at come from the lifecycle table")
    return _compare_and_set(session, BatchRow, batch_id, expected, BatchStatus(to_status).value,
                            reason=reason, values=values)


def transition_part(session: Session, part: PartRow | str, expected: str | Iterable[str],
                    to_status: PartStatus | str, *, reason: str | None = None,
                    **values: Any) -> bool:
    """Move a part from one of ``expected`` to ``to_status``; False when it had moved on.

    Raises IllegalTransitionError when the part is where the caller expected but the
    lifecycle does not allow the move.
    """
    part_id = part if isinstance(part, str) else part.id
    return _compare_and_set(session, PartRow, part_id, expected, PartStatus(to_status).value,
                            reason=reason, values=values)


def _compare_and_set(session: Session, model: type[_Row], row_id: str,
                     expected: str | Iterable[str], to_status: str, *, reason: str | None,
                     values: dict[str, Any]) -> bool:
    is_part = model is PartRow
    allowed = can_transition_part if is_part else can_transition_batch
    row = session.get(model, row_id, populate_existing=True)
    if row is None or row.status not in _expected(expected):
        return False
    if not allowed(row.status, to_status):
        raise _refuse("part" if is_part else "batch", row_id, row.status, to_status)
    now = time.time()
    if not is_part:
        move = batch_move(row.status, to_status)
        values = {**values, "due_at": due_at(move, now)}
        if move.stage is not None:
            values["stage"] = move.stage.value
    stmt = (update(model)
            .where(model.id == row_id, model.status == row.status)
            .values(status=to_status, updated_at=now, **values)
            .execution_options(synchronize_session=False))
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(EventRow(batch_id=row.batch_id if isinstance(row, PartRow) else row_id,
                         part_id=row_id if is_part else None,
                         entity="part" if is_part else "batch", from_status=row.status,
                         to_status=to_status, at=now, reason=reason))
    session.expire(row)
    return True


def claim_part(session: Session, part_id: str, statuses: str | Iterable[str],
               lease_seconds: float, *, now: float | None = None) -> bool:
    """Take a part whose time has come by pushing ``next_poll_at`` forward (a lease).

    Two copies of one nudge (the original and a sweep's) race here; exactly one wins.
    """
    now = time.time() if now is None else now
    stmt = (update(PartRow)
            .where(PartRow.id == part_id, PartRow.status.in_(_expected(statuses)),
                   or_(PartRow.next_poll_at.is_(None), PartRow.next_poll_at <= now))
            .values(next_poll_at=now + lease_seconds)
            .execution_options(synchronize_session=False))
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


def claim_batch(session: Session, batch_id: str, lease_seconds: float, *,
                stages: Iterable[BatchStage], now: float | None = None) -> bool:
    """Take a batch at one of ``stages`` whose ``due_at`` has come (pushing it forward)."""
    now = time.time() if now is None else now
    stmt = (update(BatchRow)
            .where(BatchRow.id == batch_id, BatchRow.stage.in_([s.value for s in stages]),
                   BatchRow.due_at <= now)
            .values(due_at=now + lease_seconds)
            .execution_options(synchronize_session=False))
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


def note_failure(session: Session, entity: str, row_id: str, key: str) -> int:
    """Count one more unexpected failure ``key`` of a batch's or part's step; a different
    key starts the count again. Returns the count (0: no such row)."""
    row: BatchRow | PartRow | None = (
        session.get(PartRow, row_id, populate_existing=True) if entity == "part"
        else session.get(BatchRow, row_id, populate_existing=True))
    if row is None:
        return 0
    key = key[:200]
    row.failure_count = row.failure_count + 1 if row.failure_key == key else 1
    row.failure_key = key
    session.flush()
    return row.failure_count

"""Read-only views of one batch for front ends (CLI, API extensions): its parts with their
provider facts, and its failed requests grouped by error code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, case, func, select
from sqlalchemy.orm import Session

from batchyard.db.models import PartRow, ResultRow

_PART_COLUMNS = (PartRow.id, PartRow.seq, PartRow.attempt, PartRow.deployment, PartRow.status,
                 PartRow.request_count, PartRow.provider_batch_id, PartRow.provider_status,
                 PartRow.provider_done, PartRow.provider_completed, PartRow.provider_failed,
                 PartRow.provider_errors, PartRow.last_error)


def part_rows(session: Session, batch_id: str) -> Sequence[Row[Any]]:
    """The batch's parts in submission order (plain rows, named like PartRow's columns)."""
    return session.execute(select(*_PART_COLUMNS).where(PartRow.batch_id == batch_id)
                           .order_by(PartRow.seq)).all()


def ingested_counts(session: Session, batch_id: str) -> dict[str, tuple[int, int]]:
    """part id -> (succeeded, failed) result rows ingested so far."""
    ok = func.sum(case((ResultRow.ok.is_(True), 1), else_=0))
    bad = func.sum(case((ResultRow.ok.is_(True), 0), else_=1))
    stmt = (select(ResultRow.part_id, ok, bad).where(ResultRow.batch_id == batch_id)
            .group_by(ResultRow.part_id))
    return {part_id: (int(good or 0), int(failed or 0))
            for part_id, good, failed in session.execute(stmt)}


def failure_counts(session: Session, batch_id: str) -> Sequence[Any]:
    """(error_code, count) of the batch's failed result rows, most frequent first."""
    code = func.coalesce(ResultRow.error_code, "")
    return session.execute(
        select(code.label("code"), func.count().label("n"))
        .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(False))
        .group_by(code).order_by(func.count().desc(), code)).all()


def failure_examples(session: Session, batch_id: str, code: str,
                     limit: int) -> Sequence[Any]:
    """The first ``limit`` failed rows (input order) with this error code ('' for none)."""
    return session.execute(
        select(ResultRow.custom_id, ResultRow.line_no, ResultRow.status_code,
               ResultRow.error_message)
        .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(False),
               func.coalesce(ResultRow.error_code, "") == code)
        .order_by(ResultRow.line_no).limit(limit)).all()

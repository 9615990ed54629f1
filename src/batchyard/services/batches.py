"""Batches: create (record + nudge, no provider call), read, list, cancel.

Creating a batch only writes its row (status ``validating``) and nudges ``prepare``; every
slow step happens in the workers. The row is the truth even if the nudge is lost: the sweep
finds batches that stayed ``accepted`` and nudges them again.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    Insert,
    bindparam,
    false,
    insert,
    literal,
    or_,
    select,
)

from batchyard.db.convert import BatchRecord, Page, batch_record
from batchyard.db.models import BatchRow, EventRow, FileRow
from batchyard.db.reads import read_batch
from batchyard.db.transitions import transition_batch
from batchyard.errors import InvalidInputError, NotFoundError, StateConflictError
from batchyard.services.container import Services
from batchyard.services.ids import new_batch_id
from batchyard.services.state import STAGE_ACCEPTED

logger = logging.getLogger(__name__)

#: OpenAI batches expire 24 h after creation (the only completion window).
EXPIRY_SECONDS = 86_400
_CANCELLABLE = ("validating", "in_progress", "finalizing")


def create_batch(svc: Services, *, owner: str | None, input_file_id: str, endpoint: str,
                 completion_window: str = "24h", metadata: dict[str, Any] | None = None,
                 model: str | None = None, provider: str | None = None,
                 estimate_pico: int | None = None) -> BatchRecord:
    """Record a new batch over an uploaded input file and nudge the workers.

    ``estimate_pico`` is the cost estimate when it was made at create (keys with a budget);
    otherwise the workers record one when they split the input.
    """
    now, batch_id = time.time(), new_batch_id()
    # Keyed by column name ("metadata" is the column of the ORM's metadata_).
    values: dict[str, Any] = {
        "id": batch_id, "owner_key_id": owner, "endpoint": endpoint,
        "input_file_id": input_file_id, "completion_window": completion_window, "model": model,
        "provider": provider, "status": "validating", "metadata": metadata,
        "created_at": int(now), "expires_at": int(now) + EXPIRY_SECONDS, "total": 0,
        "completed": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0,
        "cached_tokens": 0, "reasoning_tokens": 0, "stage": STAGE_ACCEPTED,
        "cancel_requested": False, "updated_at": now, "due_at": now,
        "estimate_pico": estimate_pico, "cost_pico": 0}
    # Core statements in one transaction (the API's hottest write: the ORM unit of work
    # cost more CPU than the database did); committed before the nudge, as before. The
    # batch row is inserted only if the input file qualifies; when it does not, the file
    # is read to say why.
    with svc.engine.begin() as conn:
        _insert_with_event(conn, values, owner)
    svc.nudge("prepare", batch_id)
    logger.info("batch.created", extra={"batch_id": batch_id, "input_file_id": input_file_id})
    values["metadata_"] = values.pop("metadata")
    return batch_record(BatchRow(**values))


@functools.cache
def _insert_batch_if_input_ok(names: tuple[str, ...]) -> Insert:
    """INSERT INTO batches SELECT <the values> FROM files WHERE <the input file qualifies>."""
    table = BatchRow.__table__
    qualifies = select(*(bindparam(name, type_=table.c[name].type) for name in names)).where(
        FileRow.id == bindparam("input_file_id"), FileRow.deleted.is_(false()),
        or_(bindparam("any_owner", type_=Boolean()),
            FileRow.owner_key_id == bindparam("owner_key_id")),
        FileRow.kind == "input", FileRow.purpose == "batch")
    # RETURNING, not rowcount: psycopg's driver reports -1 for an INSERT ... SELECT here.
    return insert(BatchRow).from_select(list(names), qualifies).returning(BatchRow.id)


def _insert_with_event(conn: Connection, values: dict[str, Any], owner: str | None) -> None:
    """Insert the batch row (if its input file qualifies) and its ``created`` event."""
    params = {**values, "any_owner": owner is None}
    if conn.dialect.name == "postgresql":
        # One statement, one round trip: the event is inserted from the CTE's RETURNING.
        inserted = conn.execute(_insert_batch_and_event(tuple(values)), params).first()
    else:  # SQLite has no data-modifying CTEs
        inserted = conn.execute(_insert_batch_if_input_ok(tuple(values)), params).first()
        if inserted is not None:
            conn.execute(_INSERT_EVENT, {"batch_id": values["id"], "part_id": None,
                                         "entity": "batch", "from_status": None,
                                         "to_status": "validating", "at": values["updated_at"],
                                         "reason": "created"})
    if inserted is None:
        _check_input(conn, values["input_file_id"], owner)
        raise NotFoundError(f"No such File object: {values['input_file_id']}",
                            param="input_file_id")


@functools.cache
def _insert_batch_and_event(names: tuple[str, ...]) -> Insert:
    """WITH b AS (<insert the batch if its input qualifies> RETURNING id) INSERT INTO events."""
    created = _insert_batch_if_input_ok(names).cte("created_batch")
    event_values = select(created.c.id, literal("batch"), literal("validating"),
                          bindparam("updated_at", type_=Float()), literal("created"))
    return insert(EventRow).from_select(
        ["batch_id", "entity", "to_status", "at", "reason"], event_values,
    ).returning(EventRow.batch_id)


_INSERT_EVENT = insert(EventRow)
_INPUT_FILE = select(FileRow.deleted, FileRow.owner_key_id, FileRow.kind,
                     FileRow.purpose).where(FileRow.id == bindparam("file_id"))


def _check_input(conn: Connection, file_id: str, owner: str | None) -> None:
    row = conn.execute(_INPUT_FILE, {"file_id": file_id}).one_or_none()
    if row is None or row.deleted or (owner is not None and row.owner_key_id != owner):
        raise NotFoundError(f"No such File object: {file_id}", param="input_file_id")
    if row.kind != "input" or row.purpose != "batch":
        raise InvalidInputError(f"File {file_id} was not uploaded with purpose 'batch'",
                                param="input_file_id", code="invalid_file")


def _visible(svc: Services, batch_id: str, owner: str | None) -> BatchRow:
    with svc.sessions() as session:
        row = session.get(BatchRow, batch_id)
    if row is None or (owner is not None and row.owner_key_id != owner):
        raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
    return row


def get_batch(svc: Services, batch_id: str, *, owner: str | None) -> BatchRecord:
    """One batch visible to ``owner`` (a single autocommit SELECT: the API's hottest read)."""
    record = read_batch(svc.engine, batch_id)
    if record is None or (owner is not None and record.owner_key_id != owner):
        raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
    return record


def list_batches(svc: Services, *, owner: str | None, limit: int = 20,
                 after: str | None = None) -> Page[BatchRecord]:
    """Batches visible to ``owner``, newest first; ``after`` is a batch id cursor."""
    stmt = select(BatchRow)
    if owner is not None:
        stmt = stmt.where(BatchRow.owner_key_id == owner)
    with svc.sessions() as session:
        cursor = session.get(BatchRow, after) if after else None
        if cursor is not None:
            stmt = stmt.where((BatchRow.created_at < cursor.created_at) | (
                (BatchRow.created_at == cursor.created_at) & (BatchRow.id < cursor.id)))
        rows = list(session.scalars(stmt.order_by(BatchRow.created_at.desc(),
                                                  BatchRow.id.desc()).limit(limit + 1)))
    items = [batch_record(r) for r in rows[:limit]]
    return Page(data=items, first_id=items[0].id if items else None,
                last_id=items[-1].id if items else None, has_more=len(rows) > limit)


def cancel_batch(svc: Services, batch_id: str, *, owner: str | None) -> BatchRecord:
    """Ask for a batch to be cancelled (status ``cancelling``); the workers do the rest."""
    row = _visible(svc, batch_id, owner)
    if row.status in ("cancelling", "cancelled"):
        return batch_record(row)
    now = time.time()
    with svc.sessions.begin() as session:
        moved = transition_batch(session, batch_id, _CANCELLABLE, "cancelling",
                                 reason="cancel requested", cancel_requested=True,
                                 cancelling_at=int(now), due_at=now)
    if not moved:
        raise StateConflictError(f"Cannot cancel a batch with status '{row.status}'.")
    svc.nudge("cancel", batch_id)
    return get_batch(svc, batch_id, owner=owner)

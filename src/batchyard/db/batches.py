"""The batches table: every statement that reads or writes a batch row (status moves are in
:mod:`batchyard.db.transitions`).

The two hottest calls of the API live here: creating a batch (one autocommit statement on
PostgreSQL: the event row is inserted from the batch insert's RETURNING; two in a transaction
on SQLite, which has no data-modifying CTEs) and reading one (a single SELECT on an
autocommit connection).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Connection,
    Dialect,
    Engine,
    Float,
    Insert,
    bindparam,
    case,
    false,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from batchyard.db.convert import BatchRecord, Page, batch_record
from batchyard.db.engine import READONLY, is_sqlite
from batchyard.db.models import BatchRow, EventRow, FileRow, PartRow
from batchyard.db.results import result_totals
from batchyard.domain.lifecycle import (
    PARKED_SECONDS,
    PARTS_DONE,
    PARTS_DONE_FROM,
    POLL_PART_STATUSES,
    BatchStage,
    BatchStatus,
    due_at,
)

# Labelled with the ORM attribute names (``metadata_``), so a Core row reads like a BatchRow.
_BATCH_COLUMNS = [prop.columns[0].label(prop.key) for prop in inspect(BatchRow).column_attrs]
_BATCH_BY_ID = select(*_BATCH_COLUMNS).where(BatchRow.id == bindparam("batch_id"))


def _connect(engine: Engine) -> Connection:
    """A connection for a single-statement read: autocommit on PostgreSQL, a deferred
    read-only transaction on SQLite (local BEGIN/ROLLBACK; never blocks a WAL writer)."""
    conn = engine.connect()
    conn.execution_options(**(dict(READONLY) if is_sqlite(engine)
                              else {"isolation_level": "AUTOCOMMIT"}))
    return conn


def read_batch(engine: Engine, batch_id: str) -> BatchRecord | None:
    """The batch with this id as a record, or None; one statement, one round trip."""
    with _connect(engine) as conn:
        row = conn.execute(_BATCH_BY_ID, {"batch_id": batch_id}).one_or_none()
    # batch_record only reads attributes, and the labels give the row BatchRow's names.
    return None if row is None else batch_record(cast(BatchRow, row))


def get_batch_row(session: Session, batch_id: str, *, lock: bool = False) -> BatchRow | None:
    """The batch row (fresh from the database); ``lock`` takes a row lock (FOR UPDATE)."""
    return session.get(BatchRow, batch_id, with_for_update=lock or None,
                       populate_existing=True)


# ---- create ---------------------------------------------------------------------------

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


@functools.cache
def _insert_batch_and_event(names: tuple[str, ...]) -> Insert:
    """WITH b AS (<insert the batch if its input qualifies> RETURNING id) INSERT INTO events."""
    created = _insert_batch_if_input_ok(names).cte("created_batch")
    event_values = select(created.c.id, literal("batch"), literal(BatchStatus.VALIDATING.value),
                          bindparam("updated_at", type_=Float()), literal("created"))
    return insert(EventRow).from_select(
        ["batch_id", "entity", "to_status", "at", "reason"], event_values,
    ).returning(EventRow.batch_id)


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once for the driver: its SQL, the parameters that never change
    (literals, the columns' scalar defaults) and the bind processors of the others."""

    sql: str
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]

    def params(self, given: dict[str, Any]) -> dict[str, Any]:
        params = {**self.constants, **given}
        for name, process in self.processors.items():
            params[name] = process(params[name])
        return params


@functools.cache
def _pg_create_statement(dialect: Dialect, names: tuple[str, ...]) -> _DriverStatement:
    """The create statement (batch + event) as SQLAlchemy renders it for ``dialect``."""
    compiled = _insert_batch_and_event(names).compile(dialect=dialect)
    columns = BatchRow.__table__.c
    constants: dict[str, Any] = {}
    for name, value in compiled.params.items():
        if name in names or name in ("any_owner", "updated_at"):
            continue
        if name in columns and columns[name].default is not None:
            default = columns[name].default
            if not default.is_scalar:  # a callable default: not a constant
                raise TypeError(f"column {name} has a non-scalar default")
            value = default.arg
        constants[name] = value
    processors = {name: cast(Callable[[Any], Any], process)
                  for name, process in compiled._bind_processors.items()
                  if process is not None}
    return _DriverStatement(str(compiled), constants, processors)


def _pg_create(engine: Engine, params: dict[str, Any], names: tuple[str, ...]) -> Any:
    """Run the create: one statement, one round trip, autocommit.

    The event is inserted from the CTE's RETURNING, and the statement is its own transaction
    (no BEGIN and COMMIT round trips; a single statement is atomic, so both rows are written
    or neither). With psycopg it runs on the driver connection: SQLAlchemy compiled it once,
    and executing it through the Core cost 0.2-0.4 ms of CPU per create (parameter
    processing, result set-up, the isolation level set at checkout and reset at checkin),
    more than psycopg's own work.
    """
    if engine.dialect.driver != "psycopg":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn.execute(_insert_batch_and_event(names), params).first()
    statement = _pg_create_statement(engine.dialect, names)
    values = statement.params(params)
    pooled = engine.raw_connection()
    driver: Any = pooled.driver_connection
    try:
        driver.autocommit = True
        try:
            return driver.execute(statement.sql, values).fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False
    except Exception:
        if driver.closed or driver.broken:  # the pool opens a fresh connection instead
            pooled.invalidate()
        raise
    finally:
        pooled.close()


_INSERT_EVENT = insert(EventRow)
#: Every attribute of a BatchRow, None: the record of a new batch starts from these.
_NEW_ROW: dict[str, Any] = {prop.key: None for prop in inspect(BatchRow).column_attrs}
_NEW_ROW["metadata"] = None
_SQLITE_CREATES = threading.Lock()


def insert_batch(engine: Engine, values: dict[str, Any], *,
                 owner: str | None) -> BatchRecord | None:
    """Insert a batch row (``values`` keyed by column name) and its ``created`` event in one
    transaction, only if its input file exists, is not deleted, belongs to ``owner`` (None:
    anyone's) and was uploaded for batches. None: nothing was written."""
    params = {**values, "any_owner": owner is None}
    if engine.dialect.name == "postgresql":
        inserted = _pg_create(engine, params, tuple(values))
    else:
        # SQLite has one writer at a time, and a connection that finds the write lock taken
        # sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms): concurrent creates of one
        # process wait their turn on a lock here instead, woken as soon as it is free.
        with _SQLITE_CREATES, engine.begin() as conn:  # SQLite has no data-modifying CTEs
            inserted = conn.execute(_insert_batch_if_input_ok(tuple(values)), params).first()
            if inserted is not None:
                conn.execute(_INSERT_EVENT, {"batch_id": values["id"], "part_id": None,
                                             "entity": "batch", "from_status": None,
                                             "to_status": BatchStatus.VALIDATING.value,
                                             "at": values["updated_at"],
                                             "reason": "created"})
    if inserted is None:
        return None
    # batch_record only reads attributes: a plain namespace with every column (None unless
    # given, as on a new ORM object) spares building an instrumented BatchRow per create.
    row = {**_NEW_ROW, **values, "metadata_": values.get("metadata")}
    del row["metadata"]
    return batch_record(cast(BatchRow, SimpleNamespace(**row)))


_INPUT_FILE = select(FileRow.deleted, FileRow.owner_key_id, FileRow.kind,
                     FileRow.purpose).where(FileRow.id == bindparam("file_id"))


@dataclass(frozen=True)
class InputFileFacts:
    """What decides whether a file may be a batch's input."""

    deleted: bool
    owner_key_id: str | None
    kind: str
    purpose: str


def input_file_facts(engine: Engine, file_id: str) -> InputFileFacts | None:
    """The facts of a would-be input file, to say why it was refused."""
    with engine.connect() as conn:
        row = conn.execute(_INPUT_FILE, {"file_id": file_id}).one_or_none()
    return None if row is None else InputFileFacts(bool(row.deleted), row.owner_key_id,
                                                   row.kind, row.purpose)


# ---- reads ----------------------------------------------------------------------------

def page_batches(session: Session, *, owner: str | None, limit: int,
                 after: str | None) -> Page[BatchRecord]:
    """Batches visible to ``owner``, newest first; ``after`` is a batch id cursor."""
    stmt = select(BatchRow)
    if owner is not None:
        stmt = stmt.where(BatchRow.owner_key_id == owner)
    cursor = session.get(BatchRow, after) if after else None
    if cursor is not None:
        stmt = stmt.where((BatchRow.created_at < cursor.created_at) | (
            (BatchRow.created_at == cursor.created_at) & (BatchRow.id < cursor.id)))
    rows = list(session.scalars(stmt.order_by(BatchRow.created_at.desc(),
                                              BatchRow.id.desc()).limit(limit + 1)))
    items = [batch_record(r) for r in rows[:limit]]
    return Page(data=items, first_id=items[0].id if items else None,
                last_id=items[-1].id if items else None, has_more=len(rows) > limit)


def count_batches(session: Session, *, owner: str, statuses: Iterable[str]) -> int:
    """How many of ``owner``'s batches have one of ``statuses``."""
    return int(session.scalar(select(func.count()).select_from(BatchRow).where(
        BatchRow.owner_key_id == owner, BatchRow.status.in_(list(statuses)))) or 0)


def overdue_batch_ids(session: Session, *, stages: Iterable[BatchStage], before: float,
                      cancel_requested: bool | None = None, limit: int = 500) -> list[str]:
    """Batches at one of ``stages`` whose ``due_at`` is before ``before`` (the sweep)."""
    stmt = select(BatchRow.id).where(BatchRow.stage.in_([s.value for s in stages]),
                                     BatchRow.due_at <= before)
    if cancel_requested is not None:
        stmt = stmt.where(BatchRow.cancel_requested.is_(cancel_requested))
    return list(session.scalars(stmt.limit(limit)))


# ---- stage bookkeeping ----------------------------------------------------------------

def mark_parts_done(session: Session, batch_id: str, now: float) -> bool:
    """The last live part ended: the batch waits for finalize, due now (once only)."""
    stmt = (update(BatchRow)
            .where(BatchRow.id == batch_id,
                   BatchRow.stage.in_([s.value for s in PARTS_DONE_FROM]))
            .values(stage=PARTS_DONE.stage, due_at=due_at(PARTS_DONE, now))
            .execution_options(synchronize_session=False))
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def record_split(session: Session, batch_id: str, *, written_before: int, written_after: int,
                 model: str | None, lease_until: float) -> bool:
    """One more part of a ``validating`` batch is written (compare-and-set on ``total``, the
    requests written so far): False when the batch left ``validating`` or another task
    wrote parts meanwhile, and the caller rolls its part back. Renews prepare's lease and
    sets the model (from the input's first line) for the parts' submit."""
    stmt = (update(BatchRow)
            .where(BatchRow.id == batch_id,
                   BatchRow.status == BatchStatus.VALIDATING.value,
                   BatchRow.total == written_before)
            .values(total=written_after, model=func.coalesce(BatchRow.model, model),
                    due_at=lease_until)
            .execution_options(synchronize_session=False))
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


def set_due(session: Session, batch_id: str, when: float) -> None:
    """Make the batch's stage task due at ``when`` (a lease handed back, or parked)."""
    session.execute(update(BatchRow).where(BatchRow.id == batch_id).values(due_at=when)
                    .execution_options(synchronize_session=False))


def park(session: Session, batch_id: str, now: float) -> None:
    """Nothing to do until a part says so."""
    set_due(session, batch_id, now + PARKED_SECONDS)


def refresh_live_counts(session: Session, batch_id: str) -> None:
    """Raise a running batch's request counts to its ingested results plus the provider's
    live counts of the parts it is still running. Counts never go down while the batch
    runs (a part being ingested is counted by neither for a moment) and never pass its
    total; finalize writes the exact ones."""
    ingested = result_totals(session, batch_id)
    live = session.execute(
        select(func.coalesce(func.sum(PartRow.provider_completed), 0),
               func.coalesce(func.sum(PartRow.provider_failed), 0))
        .where(PartRow.batch_id == batch_id,
               PartRow.status.in_(list(POLL_PART_STATUSES)))).one()
    total = int(session.scalar(select(BatchRow.total).where(BatchRow.id == batch_id)) or 0)
    completed = min(total, ingested["completed"] + int(live[0]))
    failed = min(total - completed, ingested["failed"] + int(live[1]))
    session.execute(
        update(BatchRow)
        .where(BatchRow.id == batch_id,
               BatchRow.status.in_([BatchStatus.IN_PROGRESS.value,
                                    BatchStatus.CANCELLING.value]),
               or_(BatchRow.completed < completed, BatchRow.failed < failed))
        .values(completed=case((BatchRow.completed < completed, completed),
                               else_=BatchRow.completed),
                failed=case((BatchRow.failed < failed, failed), else_=BatchRow.failed))
        .execution_options(synchronize_session=False))

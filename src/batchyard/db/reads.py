"""Point reads for the API's hot paths: one Core SELECT, no ORM session, no transaction.

``GET /v1/batches/{id}`` is the most frequent call a client makes (it is how SDKs wait for a
batch). Through an ORM session it cost BEGIN, the SELECT and ROLLBACK (three round trips on
PostgreSQL) plus identity-map bookkeeping. A single SELECT is atomic on its own, so it runs
on an autocommit connection (PostgreSQL) or a deferred, read-only transaction (SQLite, where
BEGIN/ROLLBACK are local calls and a deferred reader never blocks a writer in WAL mode).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Engine, bindparam, inspect, select

from batchyard.db.convert import BatchRecord, batch_record
from batchyard.db.engine import READONLY, is_sqlite
from batchyard.db.models import BatchRow

# Labelled with the ORM attribute names (``metadata_``), so a Core row reads like a BatchRow.
_BATCH_COLUMNS = [prop.columns[0].label(prop.key) for prop in inspect(BatchRow).column_attrs]
_BATCH_BY_ID = select(*_BATCH_COLUMNS).where(BatchRow.id == bindparam("batch_id"))


def _point_read_options(engine: Engine) -> dict[str, Any]:
    if is_sqlite(engine):
        return dict(READONLY)
    return {"isolation_level": "AUTOCOMMIT"}


def _connect(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.execution_options(**_point_read_options(engine))
    return conn


def read_batch(engine: Engine, batch_id: str) -> BatchRecord | None:
    """The batch with this id as a record, or None; one statement, one round trip."""
    with _connect(engine) as conn:
        row = conn.execute(_BATCH_BY_ID, {"batch_id": batch_id}).one_or_none()
    # batch_record only reads attributes, and the labels give the row BatchRow's names.
    return None if row is None else batch_record(cast(BatchRow, row))

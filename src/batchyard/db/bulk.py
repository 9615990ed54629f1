"""Bulk inserts: COPY on PostgreSQL (several times faster than multi-row VALUES),
executemany elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from batchyard.db.models import RequestRow

_REQUEST_COLUMNS = ("batch_id", "custom_id", "line_no", "body", "part_id", "attempt", "state")


def connection_of(conn: Session | Connection) -> Connection:
    """The Connection in use (a Session's current transaction's)."""
    return conn.connection() if isinstance(conn, Session) else conn


def copy_tuples(connection: Connection, table: str, columns: Sequence[str],
                rows: Sequence[tuple[Any, ...]]) -> None:
    """``COPY table (columns) FROM STDIN`` inside the current transaction (PostgreSQL), for
    rows given as tuples in ``columns`` order."""
    raw: Any = connection.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        write = cp.write_row
        for row in rows:
            write(row)


#: The column order of the tuples :func:`insert_request_tuples` takes.
REQUEST_COLUMNS = _REQUEST_COLUMNS


def insert_request_tuples(conn: Session | Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert request rows given as tuples in :data:`REQUEST_COLUMNS` order, in bulk."""
    if not rows:
        return
    connection = connection_of(conn)
    if connection.dialect.name == "postgresql":
        copy_tuples(connection, "requests", _REQUEST_COLUMNS, rows)
    else:
        connection.execute(insert(RequestRow),
                           [dict(zip(_REQUEST_COLUMNS, row, strict=True)) for row in rows])

"""The CLI's read-only statements on the embedded SQLite database, over the stdlib ``sqlite3``
driver: importing SQLAlchemy and the table models costs more than a ``batchyard status``
should take in all.

Only what ``status`` and ``results`` read lives here: the schema version, batches (newest
first, or one), a batch's parts, its failed requests grouped by error code, its result lines
and each request's cost. Each statement is the one the service layer issues for the same
answer (``db.batches``, ``db.reports``, ``db.results``, ``db.costs``, ``db.migrate``), and
rows go through the same converters (:func:`~batchyard.db.convert.batch_record`,
:func:`~batchyard.domain.reports.part_summary`, ``render_result_line``, ...), so the answers
are equal; a test compares both paths on one database. Everything else uses the service layer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from batchyard.db.convert import BatchRecord, batch_record
from batchyard.db.migrate import VERSIONS_SQL, SchemaState, state_of
from batchyard.domain.reports import FailureGroup, PartSummary, failure_group, part_summary

#: JSON columns per table (SQLAlchemy's JSON type stores text on SQLite), and the columns the
#: ORM maps under another attribute name (``BatchRow.metadata_``).
_JSON = {"batches": ("metadata", "errors"), "parts": ("provider_errors",)}
_RENAMED = {"metadata": "metadata_"}

#: As the engine's busy timeout: wait for a writer's checkpoint rather than fail.
BUSY_TIMEOUT_SECONDS = 30.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection to an existing database file (never creates one); reads only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                           timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    conn.execute("PRAGMA query_only=ON")
    return conn


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Several statements in one deferred read transaction (one consistent view, as the
    service layer's session gives); never blocks a writer in WAL mode."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        with suppress(sqlite3.ProgrammingError):  # the connection may be closed by now
            conn.execute("ROLLBACK")


def schema_state(conn: sqlite3.Connection) -> SchemaState:
    """As :func:`batchyard.db.migrate.schema_state`, on this connection."""
    try:
        current = {row[0] for row in conn.execute(VERSIONS_SQL)}
    except sqlite3.DatabaseError:
        return SchemaState.MISSING
    return state_of(current)


def _rows(conn: sqlite3.Connection, table: str, sql: str,
          params: tuple[Any, ...]) -> list[SimpleNamespace]:
    """Rows read by attribute, named like the ORM's, with JSON columns decoded."""
    cursor = conn.execute(sql, params)
    names = [_RENAMED.get(d[0], d[0]) if table == "batches" else d[0]
             for d in cursor.description]
    decode = set(_JSON.get(table, ()))
    out = []
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        for name in decode:
            key = _RENAMED.get(name, name) if table == "batches" else name
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        out.append(SimpleNamespace(**row))
    return out


def read_batch(conn: sqlite3.Connection, batch_id: str) -> BatchRecord | None:
    """The batch with this id, or None."""
    rows = _rows(conn, "batches", "SELECT * FROM batches WHERE id = ?", (batch_id,))
    return batch_record(rows[0]) if rows else None  # type: ignore[arg-type]


def recent_batches(conn: sqlite3.Connection, limit: int) -> list[BatchRecord]:
    """Every owner's batches, newest first (as ``db.batches.page_batches`` orders them)."""
    rows = _rows(conn, "batches",
                 "SELECT * FROM batches ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
    return [batch_record(r) for r in rows]  # type: ignore[arg-type]


def parts(conn: sqlite3.Connection, batch_id: str) -> list[PartSummary]:
    """The batch's parts in submission order, with their counts (``db.reports``)."""
    with _snapshot(conn):
        rows = _rows(conn, "parts", "SELECT id, seq, attempt, deployment, status, "
                     "request_count, provider_batch_id, provider_status, provider_done, "
                     "provider_completed, provider_failed, provider_errors, last_error "
                     "FROM parts WHERE batch_id = ? ORDER BY seq", (batch_id,))
        ingested = {part_id: (int(good or 0), int(bad or 0))
                    for part_id, good, bad in conn.execute(
                        "SELECT part_id, sum(CASE WHEN ok IS 1 THEN 1 ELSE 0 END), "
                        "sum(CASE WHEN ok IS 1 THEN 0 ELSE 1 END) FROM results "
                        "WHERE batch_id = ? GROUP BY part_id", (batch_id,))}
    return [part_summary(r, ingested) for r in rows]


def failures(conn: sqlite3.Connection, batch_id: str, examples: int) -> list[FailureGroup]:
    """Failed requests grouped by error code, most frequent first, with the first
    ``examples`` of each in input order."""
    with _snapshot(conn):
        groups = conn.execute(
            "SELECT coalesce(error_code, '') AS code, count(*) AS n FROM results "
            "WHERE batch_id = ? AND ok IS 0 GROUP BY coalesce(error_code, '') "
            "ORDER BY count(*) DESC, coalesce(error_code, '')", (batch_id,)).fetchall()
        return [failure_group(code, n, _rows(
            conn, "results", "SELECT custom_id, line_no, status_code, error_message "
            "FROM results WHERE batch_id = ? AND ok IS 0 AND coalesce(error_code, '') = ? "
            "ORDER BY line_no LIMIT ?", (batch_id, code, examples))) for code, n in groups]


def request_costs(conn: sqlite3.Connection, batch_id: str) -> list[tuple[Any, ...]]:
    """(custom_id, cost_pico, currency, price_source, unpriced_reason) of a batch's results."""
    return conn.execute("SELECT custom_id, cost_pico, cost_currency, price_source, "
                        "unpriced_reason FROM results WHERE batch_id = ?", (batch_id,)).fetchall()


def result_lines(conn: sqlite3.Connection, batch_id: str, *, failed_only: bool,
                 page_rows: int = 5_000) -> Iterator[bytes]:
    """The batch's OpenAI-shaped result lines in input order (only the failed ones with
    ``failed_only``), page by page in one read transaction, as ``db.results`` renders them."""
    from batchyard.domain.jsonl import render_result_line  # only ``results`` renders lines

    sql = ("SELECT batch_id, custom_id, line_no, status_code, provider_request_id, "
           "response_body, error_code, error_message FROM results "
           "WHERE batch_id = ? AND line_no > ?" + (" AND ok IS 0" if failed_only else "")
           + " ORDER BY line_no LIMIT ?")
    with _snapshot(conn):
        last_line = -1
        while True:
            rows = conn.execute(sql, (batch_id, last_line, page_rows)).fetchall()
            if not rows:
                return
            for (bid, custom_id, _line, status_code, request_id, body, error_code,
                 error_message) in rows:
                yield render_result_line(
                    batch_id=bid, custom_id=custom_id, status_code=status_code,
                    request_id=request_id,
                    body=body.encode("utf-8") if body is not None else None,
                    error_code=error_code, error_message=error_message)
            last_line = rows[-1][2]

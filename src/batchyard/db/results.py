"""The results table: bulk, idempotent writes, streaming reads and the aggregates that
settle a batch (counts, token totals, rendered file sizes)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Row, case, exists, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from batchyard.db.bulk import connection_of, copy_rows
from batchyard.db.models import RequestRow, ResultRow
from batchyard.domain.jsonl import render_result_line

_UPDATABLE = ("line_no", "part_id", "attempt", "ok", "status_code", "provider_request_id",
              "response_body", "error_code", "error_message", "input_tokens",
              "output_tokens", "total_tokens", "rendered_bytes", "created_at",
              "model", "cached_tokens", "cost_pico", "cost_currency", "price_source",
              "unpriced_reason")


def _upsert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(ResultRow)
    # Ingesting the same output twice changes nothing; a newer attempt's outcome replaces
    # an older one (a request retried after a 5xx ends with its latest answer).
    return stmt.on_conflict_do_update(
        index_elements=[ResultRow.batch_id, ResultRow.custom_id],
        set_={name: stmt.excluded[name] for name in _UPDATABLE},
        where=stmt.excluded.attempt > ResultRow.attempt,
    )


_COLUMNS = ("batch_id", "custom_id", *_UPDATABLE)
_PG_STAGE = "batchyard_results_in"


def upsert_results(conn: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert result rows in bulk; conflicts on (batch_id, custom_id) are merged.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT
    (several times faster than multi-row VALUES). Elsewhere: one executemany.
    """
    if not rows:
        return
    connection = connection_of(conn)
    if connection.dialect.name == "postgresql":
        _copy_upsert(connection, rows)
    else:
        connection.execute(_upsert(connection.dialect.name), list(rows))


def _copy_upsert(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    raw: Any = connection.connection.driver_connection
    cols = ", ".join(_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATABLE)
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGE} "
                    f"(LIKE results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        cur.execute(f"TRUNCATE {_PG_STAGE}")  # a retried transaction must not see old rows
    copy_rows(connection, _PG_STAGE, _COLUMNS, rows)
    with raw.cursor() as cur:
        cur.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM {_PG_STAGE} "
                    f"ON CONFLICT (batch_id, custom_id) DO UPDATE SET {updates} "
                    f"WHERE EXCLUDED.attempt > results.attempt")


#: The columns a rendered result line (or an export) needs.
RESULT_COLUMNS = (ResultRow.batch_id, ResultRow.custom_id, ResultRow.line_no, ResultRow.ok,
                  ResultRow.status_code, ResultRow.provider_request_id, ResultRow.response_body,
                  ResultRow.error_code, ResultRow.error_message, ResultRow.input_tokens,
                  ResultRow.output_tokens, ResultRow.attempt, ResultRow.cached_tokens,
                  ResultRow.model, ResultRow.cost_pico, ResultRow.cost_currency,
                  ResultRow.price_source, ResultRow.unpriced_reason)


def iter_batch_results(session: Session, batch_id: str, *, ok: bool | None = None,
                       page_rows: int = 5_000) -> Iterator[Row[Any]]:
    """Result rows of a batch in input order, page by page (bounded memory).

    Plain rows (attribute access by column name), not ORM objects: rendering 200,000 of
    them is several times faster without the identity map.
    """
    last_line = -1
    while True:
        stmt = (select(*RESULT_COLUMNS).where(ResultRow.batch_id == batch_id,
                                              ResultRow.line_no > last_line)
                .order_by(ResultRow.line_no).limit(page_rows))
        if ok is not None:
            stmt = stmt.where(ResultRow.ok.is_(ok))
        rows: Sequence[Row[Any]] = session.execute(stmt).all()  # type: ignore[assignment]
        if not rows:
            return
        yield from rows
        last_line = rows[-1].line_no


def close_missing(session: Session, batch_id: str, part_id: str | None, code: str,
                  message: str) -> None:
    """Give every still-unanswered request (of a part, or the batch) a final error row."""
    has_result = exists().where(ResultRow.batch_id == RequestRow.batch_id,
                                ResultRow.custom_id == RequestRow.custom_id)
    source = select(RequestRow.batch_id, RequestRow.custom_id, RequestRow.line_no,
                    RequestRow.part_id, RequestRow.attempt, literal(False), literal(code),
                    literal(message), literal(0), literal(0), literal(0), literal(0),
                    literal(int(time.time()))).where(RequestRow.batch_id == batch_id,
                                                     ~has_result)
    if part_id is not None:
        source = source.where(RequestRow.part_id == part_id)
    session.execute(insert(ResultRow).from_select(
        ["batch_id", "custom_id", "line_no", "part_id", "attempt", "ok", "error_code",
         "error_message", "input_tokens", "output_tokens", "total_tokens", "rendered_bytes",
         "created_at"],
        source))


def result_totals(session: Session, batch_id: str) -> dict[str, int]:
    """Succeeded and failed result rows and their token sums (completed, failed,
    input_tokens, output_tokens)."""
    ok = func.sum(case((ResultRow.ok.is_(True), 1), else_=0))
    bad = func.sum(case((ResultRow.ok.is_(True), 0), else_=1))
    row = session.execute(select(ok, bad, func.sum(ResultRow.input_tokens),
                                 func.sum(ResultRow.output_tokens))
                          .where(ResultRow.batch_id == batch_id)).one()
    return {"completed": int(row[0] or 0), "failed": int(row[1] or 0),
            "input_tokens": int(row[2] or 0), "output_tokens": int(row[3] or 0)}


def count_with_error(session: Session, batch_id: str, code: str) -> int:
    """How many of the batch's results ended with error ``code``."""
    return int(session.scalar(select(func.count()).select_from(ResultRow).where(
        ResultRow.batch_id == batch_id, ResultRow.error_code == code)) or 0)


def render_row(row: Any) -> bytes:
    """One line of an output/error file for a result row (ORM object or plain row)."""
    return render_result_line(
        batch_id=row.batch_id, custom_id=row.custom_id, status_code=row.status_code,
        request_id=row.provider_request_id,
        body=row.response_body.encode("utf-8") if row.response_body is not None else None,
        error_code=row.error_code, error_message=row.error_message)


def rendered_size(session: Session, batch_id: str, *, ok: bool) -> int:
    """Bytes of the batch's rendered output (``ok``) or error file, from the stored line
    lengths."""
    fill_rendered_bytes(session, batch_id)
    total = session.scalar(select(func.sum(ResultRow.rendered_bytes))
                           .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(ok)))
    return int(total or 0)


def fill_rendered_bytes(session: Session, batch_id: str) -> None:
    """Store the rendered line length of rows written in SQL only (final errors for
    unanswered requests); ingested rows got theirs when they were parsed."""
    while True:
        rows = session.execute(select(ResultRow.id, *RESULT_COLUMNS)
                               .where(ResultRow.batch_id == batch_id,
                                      ResultRow.rendered_bytes == 0).limit(2_000)).all()
        if not rows:
            return
        session.execute(update(ResultRow), [
            {"id": row.id, "rendered_bytes": len(render_row(row))} for row in rows])

"""The results table: bulk, idempotent writes, streaming reads and the aggregates that
settle a batch (counts, token totals, rendered file sizes)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Row, case, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from batchyard.db.bulk import connection_of, copy_tuples, pg_type_names
from batchyard.db.models import TOTAL_KEYS, PartRow, RequestRow, ResultRow
from batchyard.domain.jsonl import render_result_line, rendered_line_length

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
#: The column order of the tuples :func:`write_results` takes.
RESULT_WRITE_COLUMNS = _COLUMNS
#: Their PostgreSQL types: result rows are COPYed in the binary format.
_PG_TYPES = pg_type_names(ResultRow, _COLUMNS)
_PG_STAGE = "batchyard_results_in"


def upsert_results(conn: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert result rows in bulk; conflicts on (batch_id, custom_id) are merged.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT
    (several times faster than multi-row VALUES). Elsewhere: one executemany.
    """
    if not rows:
        return
    write_results(conn, [tuple(row[c] for c in _COLUMNS) for row in rows], fresh=False)


def write_results(conn: Session | Connection, rows: Sequence[tuple[Any, ...]], *,
                  fresh: bool) -> bool:
    """Write result rows given as tuples in :data:`RESULT_WRITE_COLUMNS` order, merging
    conflicts on (batch_id, custom_id) like :func:`upsert_results`.

    ``fresh`` (PostgreSQL): first try a plain COPY straight into ``results`` inside a
    savepoint (no staging table, no conflict check per row: about half the database work);
    if any row already exists (a re-ingest after a crash) the savepoint is rolled back and
    the rows are merged instead. Returns whether the plain COPY went through, so a caller
    can stop trying it once a conflict was seen.
    """
    if not rows:
        return fresh
    connection = connection_of(conn)
    if connection.dialect.name != "postgresql":
        connection.execute(_upsert(connection.dialect.name),
                           [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        return fresh
    if fresh and _copy_fresh(connection, rows):
        return True
    _copy_upsert(connection, rows)
    return False


def _copy_fresh(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> bool:
    import psycopg  # the PostgreSQL driver; only imported on this path

    raw: Any = connection.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("SAVEPOINT batchyard_results_copy")
        try:
            copy_tuples(connection, "results", _COLUMNS, rows, _PG_TYPES)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT batchyard_results_copy")
            cur.execute("RELEASE SAVEPOINT batchyard_results_copy")
            return False
        cur.execute("RELEASE SAVEPOINT batchyard_results_copy")
    return True


def _copy_upsert(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    raw: Any = connection.connection.driver_connection
    cols = ", ".join(_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATABLE)
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGE} "
                    f"(LIKE results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        cur.execute(f"TRUNCATE {_PG_STAGE}")  # a retried transaction must not see old rows
    copy_tuples(connection, _PG_STAGE, _COLUMNS, rows, _PG_TYPES)
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
                  message: str) -> int:
    """Give every still-unanswered request (of a part, or the batch) a final error row;
    returns how many. Each row is added to its part's totals in the same transaction."""
    has_result = exists().where(ResultRow.batch_id == RequestRow.batch_id,
                                ResultRow.custom_id == RequestRow.custom_id)
    source = select(RequestRow.custom_id, RequestRow.line_no, RequestRow.part_id,
                    RequestRow.attempt).where(RequestRow.batch_id == batch_id, ~has_result)
    if part_id is not None:
        source = source.where(RequestRow.part_id == part_id)
    now, written = int(time.time()), 0
    connection = connection_of(session)
    if connection.dialect.name == "postgresql":  # streamed: a cancelled batch may have many
        chunks: Iterator[Sequence[Any]] = session.execute(
            source.execution_options(yield_per=10_000)).partitions()
    else:
        chunks = iter([session.execute(source).all()])
    for chunk in chunks:
        rows = [(batch_id, r.custom_id, r.line_no, r.part_id, r.attempt, False, None, None,
                 None, code, message, 0, 0, 0,
                 rendered_line_length(batch_id=batch_id, custom_id=r.custom_id,
                                      status_code=None, error_code=code,
                                      error_message=message),
                 now, None, 0, None, None, None, None) for r in chunk]
        write_results(session, rows, fresh=True)
        add_part_totals(session, rows)
        written += len(rows)
    return written


def row_totals(rows: Iterable[tuple[Any, ...]],
               into: dict[str, int] | None = None) -> dict[str, int]:
    """Add result rows (tuples in :data:`RESULT_WRITE_COLUMNS` order) to per-part sums."""
    t = into if into is not None else dict.fromkeys(TOTAL_KEYS, 0)
    # Local counters, not dictionary updates: ingest sums every row it writes.
    completed = failed = out_bytes = err_bytes = inp = out = cached = cost = priced = 0
    unpriced = 0
    for row in rows:
        if row[_I_OK]:
            completed += 1
            out_bytes += row[_I_BYTES]
        else:
            failed += 1
            err_bytes += row[_I_BYTES]
        inp += row[_I_IN] or 0
        out += row[_I_OUT] or 0
        cached += row[_I_CACHED] or 0
        if row[_I_COST] is not None:
            cost += row[_I_COST]
            priced += 1
        if row[_I_UNPRICED] is not None:
            unpriced += 1
    for key, value in (("completed", completed), ("failed", failed),
                       ("output_bytes", out_bytes), ("error_bytes", err_bytes),
                       ("input_tokens", inp), ("output_tokens", out),
                       ("cached_tokens", cached), ("cost_pico", cost), ("priced", priced),
                       ("unpriced", unpriced)):
        t[key] += value
    return t


_I_OK, _I_BYTES, _I_IN, _I_OUT, _I_CACHED, _I_COST, _I_UNPRICED = (
    _COLUMNS.index(c) for c in ("ok", "rendered_bytes", "input_tokens", "output_tokens",
                                "cached_tokens", "cost_pico", "unpriced_reason"))


def set_part_totals(session: Session, part_id: str, totals: dict[str, int]) -> None:
    """Replace a part's result sums (ingest recomputes them from the whole output file, so
    a second ingest of the same part sets the same values)."""
    session.execute(update(PartRow).where(PartRow.id == part_id)
                    .values(result_totals=dict(totals)))


def add_part_totals(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add newly written result rows to their parts' sums (parts locked while updated)."""
    by_part: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_part.setdefault(row[_COLUMNS.index("part_id")], []).append(row)
    for pid, part_rows in by_part.items():
        current = session.scalar(select(PartRow.result_totals).where(PartRow.id == pid)
                                 .with_for_update())
        if current is None:
            continue  # a part from before the sums existed: its batch sums rows instead
        set_part_totals(session, pid, row_totals(part_rows, {**dict.fromkeys(TOTAL_KEYS, 0),
                                                             **current}))


def part_totals_sum(session: Session, batch_id: str) -> dict[str, int] | None:
    """The batch's result sums from its parts' sums (a few rows, not one per request);
    None when a part has none (created before they existed: sum the result rows)."""
    summed = dict.fromkeys(TOTAL_KEYS, 0)
    for (totals,) in session.execute(select(PartRow.result_totals)
                                     .where(PartRow.batch_id == batch_id)):
        if totals is None:
            return None
        for key in TOTAL_KEYS:
            summed[key] += int(totals.get(key) or 0)
    return summed


def result_totals(session: Session, batch_id: str) -> dict[str, int]:
    """Succeeded and failed result rows and their token sums (completed, failed,
    input_tokens, output_tokens)."""
    fast = part_totals_sum(session, batch_id)
    if fast is not None:
        return {k: fast[k] for k in ("completed", "failed", "input_tokens", "output_tokens")}
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
    lengths (summed per part when the parts keep sums)."""
    fast = part_totals_sum(session, batch_id)
    if fast is not None:
        return fast["output_bytes" if ok else "error_bytes"]
    fill_rendered_bytes(session, batch_id)
    total = session.scalar(select(func.sum(ResultRow.rendered_bytes))
                           .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(ok)))
    return int(total or 0)


def fill_rendered_bytes(session: Session, batch_id: str) -> None:
    """Store the rendered line length of rows written without one (final errors written
    in SQL before those rows got theirs at insert); ingested rows got theirs when parsed."""
    while True:
        rows = session.execute(select(*RESULT_COLUMNS)
                               .where(ResultRow.batch_id == batch_id,
                                      ResultRow.rendered_bytes == 0).limit(2_000)).all()
        if not rows:
            return
        session.execute(update(ResultRow), [  # by primary key: (batch_id, line_no)
            {"batch_id": row.batch_id, "line_no": row.line_no,
             "rendered_bytes": len(render_row(row))} for row in rows])

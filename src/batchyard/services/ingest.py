"""ingest: read a finished provider batch's output and error files into result rows.

Files are streamed to a temporary file, parsed line by line and written in bulk batches of
``ingest_batch_rows`` (each its own short transaction; an upsert keyed on (batch, custom_id)
makes a second ingest of the same file change nothing). Memory stays bounded by one batch
of rows plus the part's custom_id -> (line, attempt) map. What is left without a final result
afterwards is retried in a new part (see :mod:`batchyard.services.retry`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import operator
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from batchyard.db import batches, parts
from batchyard.db.costs import refresh_batch_totals
from batchyard.db.models import TOTAL_KEYS, BatchRow, PartRow
from batchyard.db.results import RESULT_WRITE_COLUMNS, row_totals, set_part_totals, write_results
from batchyard.db.transitions import claim_part, transition_part
from batchyard.domain.jsonl import (
    OutputLine,
    iter_output_blocks,
    rendered_line_length,
)
from batchyard.domain.lifecycle import PartStatus, part_status_after_ingest
from batchyard.errors import ProviderNotFoundError
from batchyard.metrics.counters import count_row_outcomes
from batchyard.services import anthropic_parts
from batchyard.services.container import Services
from batchyard.services.costs import RowPricer, over_cap_after_ingest, stop_for_budget
from batchyard.services.crash import crash_point
from batchyard.services.retry import requeue_for_quota, settle_part
from batchyard.services.state import pipeline_log, request_finalize_if_done

logger = logging.getLogger(__name__)

#: Read size of the downloaded file: a block of lines parsed at once comes from one read, and
#: 64 KB blocks stay in the CPU's caches while their rows are built (1 MB: ~15 % more CPU).
_READ_CHUNK = 64 << 10
#: Up to this many requests, a part's custom_id index is kept in memory while ingesting
#: (about 200 bytes each); bigger parts are looked up in SQL batch by batch.
INDEX_MAX_REQUESTS = 200_000
#: A batch of result rows is written once it holds this many response bytes.
FLUSH_BYTES = 4 << 20
#: Threads writing batches of rows, each in its own transaction on its own connection: the
#: database's share of ingest (COPY, index entries) is as large as the parsing's, so two
#: writers keep up with one parsing thread.
WRITE_THREADS = 2


def ingest_part(svc: Services, part_id: str) -> int:
    """Ingest one part whose provider batch ended; returns result rows written."""
    with svc.sessions.begin() as session:
        if not claim_part(session, part_id, PartStatus.INGESTING,
                          svc.settings.pipeline.stale_seconds):
            return 0
    with svc.sessions() as session:
        part = parts.get_part(session, part_id)
        batch = batches.get_batch_row(session, part.batch_id) if part else None
    if part is None or batch is None:
        return 0
    outcome = part_status_after_ingest(part.provider_status, error_codes=_error_codes(part),
                                       has_output=bool(part.provider_output_file_id))
    if outcome == PartStatus.REQUEUED:
        _finish(svc, part, requeue_for_quota(svc, part))
        return 0
    if outcome == PartStatus.FAILED:
        _fail_validation(svc, part)
        return 0
    written, totals = _ingest_files(svc, part, batch)
    # Recomputed from the whole output (not incremented): a second ingest cannot count twice.
    with svc.sessions.begin() as session:
        set_part_totals(session, part.id, totals)
    with svc.sessions.begin() as session:
        refresh_batch_totals(session, part.batch_id)
        over = over_cap_after_ingest(session, batch)
        stopped = over is not None and stop_for_budget(session, batch.id, over)
    if stopped:
        svc.nudge("cancel", batch.id)
    follow_up = settle_part(svc, part_id)
    with svc.sessions.begin() as session:
        batches.refresh_live_counts(session, part.batch_id)
    pipeline_log.info("batch %s part %d ingested: %d results stored, %d retry parts",
                      part.batch_id, part.seq, written, len(follow_up[0]))
    _finish(svc, part, follow_up)
    return written


def _error_codes(part: PartRow) -> list[str]:
    errors = (part.provider_errors or {}).get("data") or []
    return [str(err["code"]) for err in errors if err.get("code")]


def _fail_validation(svc: Services, part: PartRow) -> None:
    with svc.sessions.begin() as session:
        transition_part(session, part.id, PartStatus.INGESTING, PartStatus.FAILED,
                        reason="provider rejected the part's input")
        finalize = request_finalize_if_done(session, part.batch_id)
    if finalize:
        svc.nudge("finalize", part.batch_id)


def _finish(svc: Services, part: PartRow, follow_up: tuple[list[str], bool]) -> None:
    new_parts, finalize = follow_up
    for new_part in new_parts:
        svc.nudge("submit", new_part)
    if finalize:
        svc.nudge("finalize", part.batch_id)


def _ingest_files(svc: Services, part: PartRow, batch: BatchRow
                  ) -> tuple[int, dict[str, int]]:
    written, totals = 0, dict.fromkeys(TOTAL_KEYS, 0)
    for file_id in (part.provider_output_file_id, part.provider_error_file_id):
        if not file_id:
            continue
        try:
            written += _ingest_file(svc, part, batch, file_id, totals)
        except ProviderNotFoundError:
            # Gone at the provider (deleted, retention): its requests count as unanswered
            # and are retried like those of a batch that ended without output.
            logger.warning("part.output_missing", extra={"part_id": part.id, "file_id": file_id})
    logger.info("part.ingested", extra={"part_id": part.id, "rows": written})
    return written, totals


def _ingest_file(svc: Services, part: PartRow, batch: BatchRow, file_id: str,
                 totals: dict[str, int]) -> int:
    with tempfile.TemporaryFile() as tmp:
        if anthropic_parts.is_anthropic(svc, part.deployment):
            client = svc.providers.anthropic_for(str(part.deployment))
            anthropic_parts.download_results(client, file_id, batch.endpoint, tmp)
        else:  # streamed to disk, never held in memory
            svc.providers.for_deployment(str(part.deployment)).download_file(file_id, tmp)
        tmp.seek(0)
        return ingest_stream(svc, part, batch, tmp, totals)


def ingest_stream(svc: Services, part: PartRow, batch: BatchRow, stream: IO[bytes],
                  totals: dict[str, int] | None = None) -> int:
    """Parse a provider output/error file and write its result rows in bulk batches;
    ``totals`` (see ``db.results.row_totals``) gets the sums of the rows written.

    Memory is bounded by one batch of ``ingest_batch_rows`` lines plus, for parts of up to
    ``INDEX_MAX_REQUESTS`` requests (every real provider batch: OpenAI allows 50,000), an
    in-memory custom_id index of the part; larger parts look each batch up in SQL instead.
    """
    with _quiet_gc():
        return _ingest_stream(svc, part, batch, stream, totals)


def _ingest_stream(svc: Services, part: PartRow, batch: BatchRow, stream: IO[bytes],
                   totals: dict[str, int] | None) -> int:
    limit = svc.settings.pipeline.ingest_batch_rows
    written = 0
    writer = _Writer(svc, part, batch, totals)
    # Rows when the part's index is in memory (built as each block is parsed, so a block's
    # parsed lines are dropped while still in the CPU's caches), else lines.
    pending: list[Any] = []
    # A user's cancel keeps batch_cancelled as the final answer (no retry).
    pending_bytes = 0
    try:
        for block in iter_output_blocks(_chunks(stream), retry_cancelled=False):
            items = writer.prepare(block)
            pending += items
            pending_bytes += writer.size_of(items)
            # Flush by rows, or by bytes (checked per block read: a batch holds at most one
            # block more than FLUSH_BYTES), so 20 KB answers do not make a batch 40x bigger.
            start = 0
            while len(pending) - start >= limit:
                written += writer.flush(pending[start:start + limit])
                start += limit
            if start:
                del pending[:start]
                pending_bytes = writer.size_of(pending)
            if pending_bytes >= FLUSH_BYTES:
                written += writer.flush(pending)
                pending, pending_bytes = [], 0
        written += writer.flush(pending)
        writer.finish()
    finally:
        writer.stop()
    return written


_BODY = operator.attrgetter("body")
_ROW_BODY = operator.itemgetter(RESULT_WRITE_COLUMNS.index("response_body"))

#: Allocations between two young garbage collections while an ingest runs (Python's default
#: is 700; parsing a line allocates about ten dicts, lists and tuples, none in a cycle).
_GC_YOUNG_THRESHOLD = 10_000
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off the worker's long-lived objects while ingesting.

    Every object that exists when the first ingest of the process starts (modules, the
    price table, the ORM's registries: ~100,000) is frozen (``gc.freeze``: no collection
    looks at them; they are still freed by reference counting) and young collections run
    less often. Without it, 100,000 lines cost two full collections of ~50 ms each and ~100 ms
    of young ones: a fifth of the parsing thread's time. Nothing here changes what is freed,
    only when cycles are looked for; the last ingest of the process to end unfreezes."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_gc_saved[0], _GC_YOUNG_THRESHOLD), *_gc_saved[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


def _part_index(svc: Services, part: PartRow) -> dict[str, tuple[int, int]]:
    with svc.sessions() as session:
        return parts.request_index(session, part.id)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(_READ_CHUNK):
        yield chunk


class _Writer:
    """Turns parsed output lines into result rows (tuples in the table's column order) and
    writes them, one short transaction per batch of lines, on ``WRITE_THREADS`` other
    threads so the database inserts earlier batches while this thread parses the next (the
    driver waits for the server without the GIL). The batches are independent (each is
    idempotent), so their order of commit does not matter."""

    def __init__(self, svc: Services, part: PartRow, batch: BatchRow,
                 totals: dict[str, int] | None) -> None:
        self.svc, self.part, self.batch = svc, part, batch
        self.totals = totals if totals is not None else dict.fromkeys(TOTAL_KEYS, 0)
        self.pricer = RowPricer(svc, part, batch)
        #: model -> RowPricer.flat_rates(model), looked up once per model.
        self._flat: dict[str | None, tuple[int, int, int, str | None, str | None] | None] = {}
        self.max_attempts = svc.settings.pipeline.max_request_attempts
        self.index = _part_index(svc, part) if part.request_count <= INDEX_MAX_REQUESTS else None
        #: Plain COPY until a row turns out to exist already (a re-ingest): then merge.
        self.fresh = True
        #: At most two batches of rows wait for the write thread (bounded memory).
        self._queue: queue.Queue[list[tuple[Any, ...]] | None] = queue.Queue(maxsize=2)
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    def prepare(self, lines: list[OutputLine]) -> list[Any]:
        """What ingest keeps of a block of parsed lines until it is flushed: their rows when
        the part's index is in memory, else the lines (looked up in SQL at the flush)."""
        return lines if self.index is None else self.rows(lines, self.index)

    def size_of(self, items: list[Any]) -> int:
        """Response bytes (characters, for rows) of what :meth:`prepare` gave."""
        getter = _BODY if self.index is None else _ROW_BODY
        return sum(map(len, filter(None, map(getter, items))))

    def flush(self, items: list[Any]) -> int:
        """Write what :meth:`prepare` gave: rows go to a writer thread (this thread parses
        the next lines meanwhile); lines are looked up and written here."""
        if not items:
            return 0
        if self.index is None:
            with self.svc.sessions() as session:
                index = parts.lookup_requests(session, self.part.batch_id, self.part.id,
                                              [line.custom_id for line in items])
            rows = self.rows(items, index)
            self._write(rows)
        else:
            rows = items
            self._put(rows)
        before = self.totals["completed"], self.totals["failed"]
        row_totals(rows, self.totals)
        count_row_outcomes(self.totals["completed"] - before[0],
                           self.totals["failed"] - before[1])
        return len(rows)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """One short transaction: the rows, and the part's lease pushed forward (still
        working: the sweep must not hand the part to another worker)."""
        svc, part = self.svc, self.part
        with svc.sessions.begin() as session:
            if not write_results(session, rows, fresh=self.fresh):
                self.fresh = False
            parts.set_next_poll(session, part.id,
                                time.time() + svc.settings.pipeline.stale_seconds)
        crash_point(svc.settings, "mid_ingest")

    def _put(self, rows: list[tuple[Any, ...]]) -> None:
        if self._error is not None:
            self.finish()  # raises it
        if not self._threads:
            # SQLite has one writer at a time: a second thread would only wait for the lock.
            count = WRITE_THREADS if self.svc.engine.dialect.name == "postgresql" else 1
            self._threads = [threading.Thread(target=self._run, name=f"ingest-write-{n}",
                                              daemon=True) for n in range(count)]
            for thread in self._threads:
                thread.start()
        self._queue.put(rows)

    def _run(self) -> None:
        while (rows := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(rows)
                except BaseException as exc:  # handed to the parsing thread in finish()
                    self._error = exc

    def finish(self) -> None:
        """Wait until every row is written; raises what writing raised."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def stop(self) -> None:
        """Let the write thread end when parsing failed (the error being raised wins)."""
        with contextlib.suppress(Exception):
            self.finish()

    def rows(self, lines: list[OutputLine], index: dict[str, tuple[int, int]]
             ) -> list[tuple[Any, ...]]:
        """The result rows of ``lines`` (tuples in ``RESULT_WRITE_COLUMNS`` order).

        Runs once per ingested line: the common row (an answer priced by flat rates) is
        built inline, every other one through the general helpers (same values)."""
        batch_id, part_id = self.batch.id, self.part.id
        retry_allowed = not self.batch.cancel_requested
        max_attempts, price, flat = self.max_attempts, self.pricer.values, self._flat
        get = index.get
        now = int(time.time())
        out: list[tuple[Any, ...]] = []
        append = out.append
        for line in lines:
            (custom_id, ok, status, request_id, body, error_code, error_message, inp, out_t,
             total, retryable, _, cached, model, write, rendered) = line
            found = get(custom_id)
            if found is None:
                continue  # not one of this part's requests (never trust provider output)
            line_no, attempt = found
            if not ok and retryable and attempt < max_attempts and retry_allowed:
                continue  # left without a result: settle_part moves it to a retry part
            rates = None
            if ok and not write:
                if model not in flat:
                    flat[model] = self.pricer.flat_rates(model)
                rates = flat[model]
            if rates is not None:
                in_rate, cached_rate, out_rate, currency, source = rates
                hit = cached if cached < inp else inp
                cost: int | None = (inp - hit) * in_rate + hit * cached_rate + out_t * out_rate
                unpriced = None
            else:
                model, cost, currency, source, unpriced = price(line)
            append((
                batch_id, custom_id, line_no, part_id, attempt, ok, status, request_id,
                body.decode("utf-8") if body is not None else None,
                error_code, error_message, inp, out_t, total,
                rendered or rendered_line_length(
                    batch_id=batch_id, custom_id=custom_id, status_code=status,
                    request_id=request_id, body=body, error_code=error_code,
                    error_message=error_message),
                now, model, cached, cost, currency, source, unpriced))
        return out


assert RESULT_WRITE_COLUMNS == (
    "batch_id", "custom_id", "line_no", "part_id", "attempt", "ok", "status_code",
    "provider_request_id", "response_body", "error_code", "error_message", "input_tokens",
    "output_tokens", "total_tokens", "rendered_bytes", "created_at", "model",
    "cached_tokens", "cost_pico", "cost_currency", "price_source", "unpriced_reason")

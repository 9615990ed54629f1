"""prepare: validate a batch's input file, then split it, each part sent on as soon as it is cut.

Two streamed passes over the stored file, memory flat whatever its size:

1. **validate**: every check of the split (JSON, fields, duplicate custom_ids, one model,
   Anthropic translatability, a line too big for any part), nothing written. A bad line
   anywhere ends the batch ``failed`` with its line number, and nothing was written or sent.
2. **split**: the same stream (same checks, same deterministic cut points) is cut into parts;
   each part's request rows, its row (with its cost estimate) and its creation event are
   committed in the part's OWN transaction, and ``submit`` is nudged for it right after the
   commit, so the first part reaches the provider while later ones are still being cut.

Each part's transaction ends with a compare-and-set on the batch row (``db.batches.
record_split``): ``total`` (the requests written so far, the resume point) moves from what
this task last wrote to the new count, only while the batch is ``validating``; the same
statement renews the prepare lease and sets the batch's model. So a cancel, a budget stop or
a second prepare running on the same batch makes the write roll back and the task stop; no
part is written after the batch left ``validating``.

A crash (kill -9, a lost lease) leaves whole parts only. The sweep nudges prepare again once
the lease ran out; a batch with requests already written skips the validate pass (it passed
before any part was written), re-nudges its pending parts, and skips the first ``total`` lines
of the stream: parts go on from the next line, never twice, never lost. The batch moves
``validating -> in_progress`` (total, model, estimate) once every part is written; a part
that ended before that waits for it (``services.state.request_finalize_if_done`` does not
hand a ``validating`` batch to finalize), and the move itself then asks for finalize.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import marshal
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import orjson
from sqlalchemy.orm import Session

from batchyard.db import batches, files, parts
from batchyard.db.bulk import insert_request_tuples
from batchyard.db.models import BatchRow, FileRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.jsonl import RequestBlock, iter_part_blocks, iter_request_blocks
from batchyard.domain.lifecycle import BatchStage, BatchStatus, PartStatus
from batchyard.domain.pricing import PriceLookup, default_output_tokens
from batchyard.errors import JsonlError
from batchyard.services import anthropic_parts
from batchyard.services.container import Services
from batchyard.services.costs import TokenTally, price_for_group, tally_pico
from batchyard.services.crash import crash_point
from batchyard.services.ids import new_part_id
from batchyard.services.state import pipeline_log, request_finalize_if_done

logger = logging.getLogger(__name__)

#: Bytes per line kept free in a part for re-serialisation at upload (numbers such as
#: ``1e5`` come back as ``100000.0``), on top of the longest model name a deployment writes.
_REWRITE_SLACK = 16


class _Moved(Exception):
    """The batch left ``validating`` (or another task wrote its parts) while we split it."""


def prepare_batch(svc: Services, batch_id: str) -> list[str]:
    """Validate and split a batch's input; returns the ids of the parts this call wrote
    (each nudged to ``submit`` right after its own commit)."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[BatchStage.ACCEPTED]):
            return []
    loaded = _load(svc, batch_id)
    if loaded is None:
        return []
    batch, input_file, waiting = loaded
    for part_id in waiting:  # resumed after a crash: their nudges may be lost too
        svc.nudge("submit", part_id)
    return _validate_and_split(svc, batch, input_file)


def _load(svc: Services, batch_id: str) -> tuple[BatchRow, FileRow | None, list[str]] | None:
    """The batch to split, its input file and its parts waiting for ``submit`` (written by
    an earlier run); None: nothing to split."""
    hand_over = False
    with svc.sessions.begin() as session:
        batch = batches.get_batch_row(session, batch_id)
        if batch is not None and batch.status == BatchStatus.CANCELLING:
            # Cancelled before the split: end it here rather than hold the lease from the
            # cancel task until it runs out (parts written: the cancel task stops them).
            hand_over = not end_cancelled_before_split(session, batch_id)
            if hand_over:
                batches.set_due(session, batch_id, time.time())
        elif batch is not None and batch.status == BatchStatus.VALIDATING:
            waiting = [p.id for p in parts.parts_of(session, batch_id)
                       if p.status == PartStatus.PENDING] if batch.total else []
            return batch, files.get_file_row(session, batch.input_file_id), waiting
    if hand_over:
        svc.nudge("cancel", batch_id)
    return None


def _validate_and_split(svc: Services, batch: BatchRow, input_file: FileRow | None) -> list[str]:
    writer = _PartWriter(svc, batch)
    try:
        if not batch.total:  # parts exist only once the whole file passed this check
            _validate(svc, batch, input_file)
        _split(svc, batch, input_file, writer)
    except _Moved:
        return writer.part_ids
    except JsonlError as exc:
        _end_failed(svc, batch.id, exc, written=batch.total + writer.written)
        return writer.part_ids
    _start_running(svc, batch, writer)
    pipeline_log.info("batch %s validated: split into %d parts", batch.id, writer.parts)
    return writer.part_ids


def end_cancelled_before_split(session: Session, batch_id: str) -> bool:
    """A batch cancelled before any part of it was written ends ``cancelled`` at once
    (False: parts exist, or it had moved on; the cancel task stops the parts)."""
    if parts.next_seq(session, batch_id) > 1:
        return False
    moved = transition_batch(session, batch_id, BatchStatus.CANCELLING, BatchStatus.CANCELLED,
                             reason="cancelled before validation",
                             cancelled_at=int(time.time()))
    if moved:
        pipeline_log.info("batch %s cancelled before validation", batch_id)
    return moved


def input_chunks(svc: Services, file_row: FileRow | None) -> Iterator[bytes]:
    """The stored bytes of an input file, streamed."""
    if file_row is None or file_row.storage_key is None or file_row.deleted:
        raise JsonlError("the input file no longer exists", code="file_not_found")
    yield from svc.store.read(file_row.storage_key)


def _cut(svc: Services, batch: BatchRow,
         file_row: FileRow | None) -> Iterator[tuple[int, RequestBlock]]:
    """The input as ``(part index, block)``: every check, and the same cut points each time."""
    blocks, max_requests, max_bytes = anthropic_parts.prepare_blocks(
        svc, batch.model, batch.provider,
        iter(iter_request_blocks(input_chunks(svc, file_row), endpoint=batch.endpoint)))
    return iter_part_blocks(blocks, max_requests=max_requests, max_bytes=max_bytes,
                            line_overhead=rewrite_margin(svc))


def _validate(svc: Services, batch: BatchRow, file_row: FileRow | None) -> None:
    """Pass 1: run the whole stream through every check, writing nothing."""
    collections.deque(_cut(svc, batch, file_row), maxlen=0)


def _split(svc: Services, batch: BatchRow, file_row: FileRow | None,
           writer: _PartWriter) -> None:
    """Pass 2: cut the stream into parts, each committed and nudged on its own."""
    try:
        for index, block in _cut(svc, batch, file_row):
            writer.write(index, block)
        writer.close()
    except _Moved:
        raise
    except Exception:
        # E.g. a unique violation of the request rows (from the driver's COPY on another
        # thread, or the ORM): another prepare wrote them first. Then stop like a lost CAS.
        writer.abort()
        if writer.overtaken():
            raise _Moved from None
        raise
    finally:
        writer.abort()  # a part left open by an error is rolled back


def _start_running(svc: Services, batch: BatchRow, writer: _PartWriter) -> None:
    """Every part is written: the batch runs (or, if its parts all ended already, finalizes)."""
    with svc.sessions.begin() as session:
        moved = transition_batch(
            session, batch.id, BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS,
            reason=f"split into {writer.parts} parts", total=writer.seen,
            model=batch.model or writer.model, in_progress_at=int(time.time()),
            estimate_pico=writer.batch_estimate())
        finalize = moved and request_finalize_if_done(session, batch.id)
    if finalize:
        svc.nudge("finalize", batch.id)


def rewrite_margin(svc: Services) -> int:
    """Bytes a line may grow at upload when a deployment writes its own model name."""
    names = [orjson.dumps(dep.model) for dep in svc.deployments.all() if dep.rewrites_model]
    return max(map(len, names)) + _REWRITE_SLACK if names else 0


class _RowCopier:
    """Writes one part's request rows inside the part's transaction.

    PostgreSQL: on a second thread, so the database inserts one block while this thread
    validates and splits the next (the driver waits for the server without the GIL). Same
    connection and transaction; the caller's thread must not use the session until
    :meth:`drain` returned. At most two blocks wait (bounded memory).

    SQLite: blocks are spooled to a temporary file and inserted at :meth:`drain`. SQLite
    has one writer and a transaction takes the write lock when it starts, so writing as we
    go would hold the lock while the whole part is parsed, and the submit of the parts
    already written (its intent writes) would wait for the end of the split.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.threaded = session.get_bind().dialect.name == "postgresql"
        self._spool: IO[bytes] | None = None
        self._queue: queue.Queue[list[tuple[Any, ...]] | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, rows: list[tuple[Any, ...]]) -> None:
        if not self.threaded:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile()
            marshal.dump(rows, self._spool)  # tuples of str and int
            return
        if self._error is not None:
            self.drain()  # raises it
        if self._thread is None:
            self.connection = self.session.connection()
            self._thread = threading.Thread(target=self._run, name="prepare-copy", daemon=True)
            self._thread.start()
        self._queue.put(rows)

    def _run(self) -> None:
        while (rows := self._queue.get()) is not None:
            if self._error is None:
                try:
                    insert_request_tuples(self.connection, rows)
                except BaseException as exc:  # handed to the caller's thread in drain()
                    self._error = exc

    def drain(self) -> None:
        """Wait until every block is written; raises what writing one raised."""
        if self._spool is not None:
            spool, self._spool = self._spool, None
            with spool:
                spool.seek(0)
                connection = self.session.connection()
                with contextlib.suppress(EOFError):
                    while True:
                        insert_request_tuples(connection, marshal.load(spool))
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def discard(self) -> None:
        """Drop what is not written (the transaction is rolled back next)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        with contextlib.suppress(Exception):
            self.drain()


class _PartWriter:
    """Writes each part in its own transaction (request rows ``ingest_batch_rows`` at a
    time, then the part row, then the batch's compare-and-set), commits, nudges ``submit``.

    The first ``batch.total`` requests of the stream were written by an earlier run: they
    are counted (for the batch's total and estimate) but not written again.
    """

    def __init__(self, svc: Services, batch: BatchRow) -> None:
        self.svc, self.batch_id = svc, batch.id
        self.chunk_rows = max(1, svc.settings.pipeline.ingest_batch_rows)
        self.skip = batch.total  # requests already written (the resume point)
        self.part_ids: list[str] = []  # written by this call
        self.parts = 0  # parts of the whole input, earlier runs' included
        self.seen = 0  # requests of the stream so far
        self.written = 0  # requests written by this call
        self.model: str | None = batch.model
        self._batch = batch
        self._price: PriceLookup | None = None  # once the model is known
        self._default_out = default_output_tokens(batch.endpoint)
        self._old = TokenTally()  # the requests earlier runs wrote
        self._estimates: list[int | None] = []  # of the parts this call wrote
        self._index = -1
        self._session: Session | None = None
        self._part_id = ""
        self._copier: _RowCopier | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._tally = TokenTally()
        self._count = self._bytes = self._tokens = 0

    def write(self, index: int, block: RequestBlock) -> None:
        """Take a block of part ``index`` (a new index closes the previous part)."""
        self.model = self.model or block.models[0]
        if index != self._index:
            self.close()
            self._index = index
            self.parts += 1
        self.seen += len(block)
        if self.seen - len(block) < self.skip:  # the resume point: skip what is written
            old = min(len(block), self.skip - (self.seen - len(block)))
            self._old.add(block.raws[:old], block.est_tokens[:old], self._default_out)
            if old == len(block):
                return
            block = block.cut(old, len(block))
        if self._session is None:
            self._open()
        part_id, batch_id = self._part_id, self.batch_id
        # In bulk.REQUEST_COLUMNS order.
        self._rows += [(batch_id, custom_id, line_no, raw.decode("utf-8"), part_id, 1, "pending")
                       for line_no, custom_id, raw in zip(block.line_nos, block.custom_ids,
                                                          block.raws, strict=True)]
        self._count += len(block.sizes)
        self._bytes += sum(block.sizes) + len(block.sizes)
        self._tokens += sum(block.est_tokens)
        self._tally.add(block.raws, block.est_tokens, self._default_out)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _open(self) -> None:
        self._session = self.svc.sessions()
        self._session.begin()
        self._copier = _RowCopier(self._session)
        self._part_id = new_part_id()

    def _flush(self) -> None:
        if self._rows and self._copier is not None:
            self._copier.put(self._rows)
        self._rows = []

    def close(self) -> None:
        """Commit the current part (rows, part row, event, batch CAS), then nudge it."""
        session, copier = self._session, self._copier
        if session is None or copier is None or not self._count:
            return
        self._flush()
        copier.drain()  # the session is this thread's again
        part_id, count = self._part_id, self._count
        estimate = tally_pico(self.price(), self._tally)
        before = self.skip + self.written
        # The compare-and-set first: it locks the batch row, so the part's number below
        # cannot be taken by another writer (a retry, a second prepare) before the commit.
        if not batches.record_split(session, self.batch_id, written_before=before,
                                    written_after=before + count, model=self.model,
                                    lease_until=time.time() + self.svc.settings.pipeline
                                    .stale_seconds):
            raise _Moved  # the part's rows are rolled back by abort()
        parts.add_part(session, part_id=part_id, batch_id=self.batch_id,
                       seq=parts.next_seq(session, self.batch_id), attempt=1,
                       request_count=count, byte_size=self._bytes,
                       estimated_tokens=self._tokens, now=time.time(),
                       reason=f"{count} requests", estimate_pico=estimate)
        session.commit()
        self._end_part()
        self.part_ids.append(part_id)
        self.written += count
        self._estimates.append(estimate)
        self._tally = TokenTally()
        self._count = self._bytes = self._tokens = 0
        crash_point(self.svc.settings, "mid_prepare")  # committed, not nudged yet
        self.svc.nudge("submit", part_id)

    def _end_part(self) -> None:
        if self._copier is not None:
            self._copier.discard()
        if self._session is not None:
            self._session.close()  # rolls back what is not committed
        self._session = self._copier = None

    def abort(self) -> None:
        """Roll back a part left open by an error (its copy thread first)."""
        if self._session is not None:
            self._rows = []
            self._end_part()

    def price(self) -> PriceLookup:
        """The price the batch's model is expected to pay (looked up once)."""
        if self._price is None:
            batch = self._batch
            self._price = price_for_group(self.svc, batch.model or self.model, batch.provider,
                                          at=batch.created_at)
        return self._price

    def overtaken(self) -> bool:
        """Has the batch moved past what this writer wrote (another task's parts, a cancel)?"""
        with self.svc.sessions() as session:
            batch = batches.get_batch_row(session, self.batch_id)
            return (batch is None or batch.status != BatchStatus.VALIDATING
                    or batch.total != self.skip + self.written)

    def batch_estimate(self) -> int | None:
        """The whole input's estimate (None when any of it is unpriced)."""
        picos = [*self._estimates, tally_pico(self.price(), self._old) if self.skip else 0]
        return None if any(p is None for p in picos) else sum(p or 0 for p in picos)


def _end_failed(svc: Services, batch_id: str, exc: JsonlError, *, written: int) -> None:
    error = {"code": exc.code or "invalid_request", "message": exc.message,
             "param": exc.param, "line": exc.line}
    errors = {"object": "list", "data": [error]}
    with svc.sessions.begin() as session:
        if written:
            # Parts were written (and maybe sent) before the input went missing: stop them
            # as a cancel would, keeping what they return.
            moved = transition_batch(session, batch_id, BatchStatus.VALIDATING,
                                     BatchStatus.CANCELLING, reason=exc.message, errors=errors,
                                     cancel_requested=True, cancelling_at=int(time.time()))
        else:
            moved = transition_batch(session, batch_id, BatchStatus.VALIDATING,
                                     BatchStatus.FAILED, reason=exc.message, errors=errors,
                                     failed_at=int(time.time()))
    if moved and written:
        svc.nudge("cancel", batch_id)
    pipeline_log.info("batch %s failed validation: line %s: %s (%s)", batch_id, exc.line,
                      exc.message, error["code"])

"""prepare's writer: each part of a split in its own transaction, committed and nudged.

See :mod:`batchyard.services.prepare` for the whole shape (validate first, then split).
"""

from __future__ import annotations

import contextlib
import marshal
import queue
import tempfile
import threading
import time
from typing import IO, Any

from sqlalchemy.orm import Session

from batchyard.db import batches, parts
from batchyard.db.bulk import insert_request_tuples
from batchyard.db.models import BatchRow
from batchyard.domain.jsonl import RequestBlock
from batchyard.domain.lifecycle import BatchStatus
from batchyard.domain.pricing import PriceLookup, default_output_tokens
from batchyard.services.container import Services
from batchyard.services.costs import TokenTally, price_for_group, tally_pico
from batchyard.services.crash import crash_point
from batchyard.services.ids import new_part_id


class SplitMoved(Exception):
    """The batch left ``validating`` (or another task wrote its parts) while we split it."""


class RowCopier:
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


class PartWriter:
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
        self._copier: RowCopier | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._tally = TokenTally()  # the open part: requests, estimated tokens
        self._bytes = 0

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
        self._bytes += sum(block.sizes) + len(block.sizes)
        self._tally.add(block.raws, block.est_tokens, self._default_out)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _open(self) -> None:
        self._session = self.svc.sessions()
        self._session.begin()
        self._copier = RowCopier(self._session)
        self._part_id = new_part_id()

    def _flush(self) -> None:
        if self._rows and self._copier is not None:
            self._copier.put(self._rows)
        self._rows = []

    def close(self) -> None:
        """Commit the current part (rows, part row, event, batch CAS), then nudge it."""
        session, copier = self._session, self._copier
        if session is None or copier is None or not self._tally.requests:
            return
        self._flush()
        copier.drain()  # the session is this thread's again
        part_id, count = self._part_id, self._tally.requests
        estimate = tally_pico(self.price(), self._tally)
        before = self.skip + self.written
        # The compare-and-set first: it locks the batch row, so the part's number below
        # cannot be taken by another writer (a retry, a second prepare) before the commit.
        if not batches.record_split(session, self.batch_id, written_before=before,
                                    written_after=before + count, model=self.model,
                                    lease_until=time.time() + self.svc.settings.pipeline
                                    .stale_seconds):
            raise SplitMoved  # the part's rows are rolled back by abort()
        parts.add_part(session, part_id=part_id, batch_id=self.batch_id,
                       seq=parts.next_seq(session, self.batch_id), attempt=1,
                       request_count=count, byte_size=self._bytes,
                       estimated_tokens=self._tally.input_tokens, now=time.time(),
                       reason=f"{count} requests", estimate_pico=estimate)
        session.commit()
        self._end_part()
        self.part_ids.append(part_id)
        self.written += count
        self._estimates.append(estimate)
        self._tally = TokenTally()
        self._bytes = 0
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

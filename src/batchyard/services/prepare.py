"""prepare: validate a batch's input file and split it into parts, all or nothing.

The file is streamed: lines are validated, cut into parts and written as request rows
``ingest_batch_rows`` at a time, so memory stays flat whatever the part size. All
of it happens in ONE transaction with the parts: a bad line anywhere (also in a later part,
after earlier parts' rows were written) rolls everything back and the batch ends ``failed``
with the line number, so no part or request row of a rejected file ever exists. A crash
mid-way rolls back the same way; the batch's lease runs out and the sweep nudges it again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy.orm import Session

from batchyard.db import batches, files, parts
from batchyard.db.bulk import insert_request_tuples
from batchyard.db.models import BatchRow, FileRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.jsonl import RequestBlock, iter_part_blocks, iter_request_blocks
from batchyard.domain.lifecycle import BatchStage, BatchStatus
from batchyard.domain.pricing import default_output_tokens
from batchyard.errors import JsonlError
from batchyard.services import anthropic_parts
from batchyard.services.container import Services
from batchyard.services.costs import TokenTally, record_estimates
from batchyard.services.ids import new_part_id
from batchyard.services.state import pipeline_log

logger = logging.getLogger(__name__)

#: Bytes per line kept free in a part for re-serialisation at upload (numbers such as
#: ``1e5`` come back as ``100000.0``), on top of the longest model name a deployment writes.
_REWRITE_SLACK = 16


class _Moved(Exception):
    """The batch left ``validating`` while we were splitting it."""


def prepare_batch(svc: Services, batch_id: str) -> list[str]:
    """Validate and split a batch's input; returns the new part ids (already nudged)."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[BatchStage.ACCEPTED]):
            return []
    with svc.sessions.begin() as session:
        batch = batches.get_batch_row(session, batch_id)
        if batch is not None and batch.status == BatchStatus.CANCELLING:
            # Cancelled before the split: end it here rather than hold the lease from the
            # cancel task until it runs out.
            end_cancelled_before_split(session, batch_id)
            return []
        if batch is None or batch.status != BatchStatus.VALIDATING:
            return []
        input_file = files.get_file_row(session, batch.input_file_id)
    try:
        part_ids = _split_and_store(svc, batch, input_file)
    except _Moved:
        return []
    except JsonlError as exc:
        _end_failed(svc, batch_id, exc)
        return []
    for part_id in part_ids:
        svc.nudge("submit", part_id)
    pipeline_log.info("batch %s validated: split into %d parts", batch_id, len(part_ids))
    return part_ids


def end_cancelled_before_split(session: Session, batch_id: str) -> bool:
    """A batch cancelled before its input was split ends ``cancelled`` at once."""
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


def _split_and_store(svc: Services, batch: BatchRow, file_row: FileRow | None) -> list[str]:
    cfg = svc.settings.pipeline
    blocks, max_requests, max_bytes = anthropic_parts.prepare_blocks(
        svc, batch.model, batch.provider,
        iter(iter_request_blocks(input_chunks(svc, file_row), endpoint=batch.endpoint)))
    parts = iter_part_blocks(blocks, max_requests=max_requests, max_bytes=max_bytes,
                             line_overhead=rewrite_margin(svc))
    now = time.time()
    with svc.sessions.begin() as session:
        writer = _PartWriter(session, batch.id, now, max(1, cfg.ingest_batch_rows),
                             batch.endpoint)
        try:
            for index, block in parts:
                writer.write(index, block)
            writer.close()
        finally:
            writer.stop()  # before the transaction ends, whichever way
        record_estimates(svc, session, batch, writer.part_tokens,
                         model=batch.model or writer.model)
        moved = transition_batch(session, batch.id, BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS,
                                 reason=f"split into {len(writer.part_ids)} parts",
                                 total=writer.total, model=batch.model or writer.model,
                                 in_progress_at=int(now))
        if not moved:  # cancelled or changed meanwhile: roll the whole split back
            raise _Moved
    return writer.part_ids


def rewrite_margin(svc: Services) -> int:
    """Bytes a line may grow at upload when a deployment writes its own model name."""
    names = [orjson.dumps(dep.model) for dep in svc.deployments.all() if dep.rewrites_model]
    return max(map(len, names)) + _REWRITE_SLACK if names else 0


class _RowCopier:
    """Writes request rows on a second thread (PostgreSQL), so the database inserts one
    block while this thread validates and splits the next: the driver waits for the
    server without the GIL. Same connection and transaction; the caller's thread must not
    use the session until :meth:`drain` returned. At most two blocks wait (bounded memory).
    """

    def __init__(self, session: Session) -> None:
        self.connection = session.connection()
        self.threaded = self.connection.dialect.name == "postgresql"
        self._queue: queue.Queue[list[tuple[Any, ...]] | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, rows: list[tuple[Any, ...]]) -> None:
        if not self.threaded:
            insert_request_tuples(self.connection, rows)
            return
        if self._error is not None:
            self.drain()  # raises it
        if self._thread is None:
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
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class _PartWriter:
    """Writes request rows ``chunk_rows`` at a time; a part's row is added once it is whole."""

    def __init__(self, session: Session, batch_id: str, now: float, chunk_rows: int,
                 endpoint: str | None = None) -> None:
        self.session, self.batch_id, self.now = session, batch_id, now
        self.chunk_rows = chunk_rows
        self.part_ids: list[str] = []
        #: Estimated tokens of each part, for its cost estimate.
        self.part_tokens: dict[str, TokenTally] = {}
        self._tally = TokenTally()
        self._default_out = default_output_tokens(endpoint)
        self.total = 0
        self.model: str | None = None
        self._index = -1
        self._rows: list[tuple[Any, ...]] = []
        self._count = self._bytes = self._tokens = 0
        self._copier = _RowCopier(session)

    def write(self, index: int, block: RequestBlock) -> None:
        """Take a block of part ``index`` (a new index closes the previous part)."""
        if index != self._index:
            self.close()
            self._index = index
            self.part_ids.append(new_part_id())
            self.model = self.model or block.models[0]
        part_id, batch_id = self.part_ids[-1], self.batch_id
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

    def _flush(self) -> None:
        if self._rows:
            self._copier.put(self._rows)
        self._rows = []

    def close(self) -> None:
        """Write the rest of the current part's rows, then its row and creation event."""
        if not self._count:
            return
        self._flush()
        self._copier.drain()  # the session is this thread's again
        part_id, count = self.part_ids[-1], self._count
        parts.add_part(self.session, part_id=part_id, batch_id=self.batch_id,
                       seq=len(self.part_ids), attempt=1, request_count=count,
                       byte_size=self._bytes, estimated_tokens=self._tokens, now=self.now,
                       reason=f"{count} requests")
        self.part_tokens[part_id] = self._tally
        self._tally = TokenTally()
        self.total += count
        self._count = self._bytes = self._tokens = 0

    def stop(self) -> None:
        """Let the copy thread end before the transaction does. On success ``close`` has
        drained it already; after an error the transaction rolls back, so a write error
        of the thread adds nothing to the one being raised."""
        with contextlib.suppress(Exception):
            self._copier.drain()


def _end_failed(svc: Services, batch_id: str, exc: JsonlError) -> None:
    error = {"code": exc.code or "invalid_request", "message": exc.message,
             "param": exc.param, "line": exc.line}
    with svc.sessions.begin() as session:
        transition_batch(session, batch_id, BatchStatus.VALIDATING, BatchStatus.FAILED,
                         reason=exc.message, errors={"object": "list", "data": [error]},
                         failed_at=int(time.time()))
    pipeline_log.info("batch %s failed validation: line %s: %s (%s)", batch_id, exc.line,
                      exc.message, error["code"])


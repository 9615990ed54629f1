"""prepare: validate a batch's input file, then split it, each part sent on as soon as it is cut.

Two streamed passes over the stored file, memory flat whatever its size:

1. **validate**: every check of the split (JSON, fields, duplicate custom_ids, one model,
   Anthropic translatability, a line too big for any part), nothing written. A bad line
   anywhere ends the batch ``failed`` with its line number, and nothing was written or sent.
2. **split**: the same stream (same checks, same deterministic cut points) is cut into parts;
   each part's request rows, its row (with its cost estimate) and its creation event are
   committed in the part's OWN transaction, and ``submit`` is nudged for it right after the
   commit, so the first part reaches the provider while later ones are still being cut.

Why two passes: all or nothing means no part may leave before the last line is checked, so
the earliest any part can go is after one full read of the file. Writing parts during that
read and sending them at its end gains nothing; reading twice costs one more parse (about a
second per million short lines, next to the several seconds the rows take to write) and
lets the first part go as soon as the check ends (``docs/benchmarks.md``).

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

The per-part writer (transactions, the row copy thread on PostgreSQL, the spool on SQLite)
is :mod:`batchyard.services.part_writer`.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator

import orjson
from sqlalchemy.orm import Session

from batchyard.db import batches, files, parts
from batchyard.db.models import BatchRow, FileRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.jsonl import RequestBlock, iter_part_blocks, iter_request_blocks
from batchyard.domain.lifecycle import BatchStage, BatchStatus, PartStatus
from batchyard.errors import JsonlError
from batchyard.services import anthropic_parts
from batchyard.services.container import Services
from batchyard.services.part_writer import PartWriter, SplitMoved
from batchyard.services.state import pipeline_log, request_finalize_if_done

logger = logging.getLogger(__name__)

#: Bytes per line kept free in a part for re-serialisation at upload (numbers such as
#: ``1e5`` come back as ``100000.0``), on top of the longest model name a deployment writes.
_REWRITE_SLACK = 16


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
    writer = PartWriter(svc, batch)
    try:
        if not batch.total:  # parts exist only once the whole file passed this check
            _validate(svc, batch, input_file)
        _split(svc, batch, input_file, writer)
    except SplitMoved:
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
           writer: PartWriter) -> None:
    """Pass 2: cut the stream into parts, each committed and nudged on its own."""
    try:
        for index, block in _cut(svc, batch, file_row):
            writer.write(index, block)
        writer.close()
    except SplitMoved:
        raise
    except Exception:
        # E.g. a unique violation of the request rows (from the driver's COPY on another
        # thread, or the ORM): another prepare wrote them first. Then stop like a lost CAS.
        writer.abort()
        if writer.overtaken():
            raise SplitMoved from None
        raise
    finally:
        writer.abort()  # a part left open by an error is rolled back


def _start_running(svc: Services, batch: BatchRow, writer: PartWriter) -> None:
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

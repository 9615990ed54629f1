"""prepare: validate a batch's input file and split it into parts, all or nothing.

The file is streamed: lines are validated, cut into parts and written as request rows
``ingest_batch_rows`` at a time, so memory stays flat whatever the part size. All
of it happens in ONE transaction with the parts: a bad line anywhere (also in a later part,
after earlier parts' rows were written) rolls everything back and the batch ends ``failed``
with the line number, so no part or request row of a rejected file ever exists. A crash
mid-way rolls back the same way; the batch's lease runs out and the sweep nudges it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy.orm import Session

from batchyard.db import batches, files, parts
from batchyard.db.bulk import insert_requests
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
        for index, block in parts:
            writer.write(index, block)
        writer.close()
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
        self._rows: list[dict[str, Any]] = []
        self._count = self._bytes = self._tokens = 0

    def write(self, index: int, block: RequestBlock) -> None:
        """Take a block of part ``index`` (a new index closes the previous part)."""
        if index != self._index:
            self.close()
            self._index = index
            self.part_ids.append(new_part_id())
            self.model = self.model or block.models[0]
        part_id, batch_id = self.part_ids[-1], self.batch_id
        self._rows += [
            {"batch_id": batch_id, "custom_id": custom_id, "line_no": line_no,
             "body": raw.decode("utf-8"), "part_id": part_id, "attempt": 1, "state": "pending"}
            for line_no, custom_id, raw in zip(block.line_nos, block.custom_ids, block.raws,
                                               strict=True)]
        self._count += len(block.sizes)
        self._bytes += sum(block.sizes) + len(block.sizes)
        self._tokens += sum(block.est_tokens)
        self._tally.add(block.raws, block.est_tokens, self._default_out)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        insert_requests(self.session, self._rows)
        self._rows = []

    def close(self) -> None:
        """Write the rest of the current part's rows, then its row and creation event."""
        if not self._count:
            return
        self._flush()
        part_id, count = self.part_ids[-1], self._count
        parts.add_part(self.session, part_id=part_id, batch_id=self.batch_id,
                       seq=len(self.part_ids), attempt=1, request_count=count,
                       byte_size=self._bytes, estimated_tokens=self._tokens, now=self.now,
                       reason=f"{count} requests")
        self.part_tokens[part_id] = self._tally
        self._tally = TokenTally()
        self.total += count
        self._count = self._bytes = self._tokens = 0


def _end_failed(svc: Services, batch_id: str, exc: JsonlError) -> None:
    error = {"code": exc.code or "invalid_request", "message": exc.message,
             "param": exc.param, "line": exc.line}
    with svc.sessions.begin() as session:
        transition_batch(session, batch_id, BatchStatus.VALIDATING, BatchStatus.FAILED,
                         reason=exc.message, errors={"object": "list", "data": [error]},
                         failed_at=int(time.time()))
    pipeline_log.info("batch %s failed validation: line %s: %s (%s)", batch_id, exc.line,
                      exc.message, error["code"])


"""Batches: create (record + nudge, no provider call), read, list, cancel.

Creating a batch only writes its row (status ``validating``) and nudges ``prepare``; every
slow step happens in the workers. The row is the truth even if the nudge is lost: the sweep
finds batches that stayed ``accepted`` and nudges them again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

from batchyard.db import batches as repo
from batchyard.db.convert import BatchRecord, Page
from batchyard.db.transitions import transition_batch
from batchyard.domain.lifecycle import NEW_BATCH, BatchStage, BatchStatus, due_at
from batchyard.errors import InvalidInputError, NotFoundError, StateConflictError
from batchyard.services.container import Services
from batchyard.services.ids import new_batch_id
from batchyard.services.state import pipeline_log

logger = logging.getLogger(__name__)

#: OpenAI batches expire 24 h after creation (the only completion window).
EXPIRY_SECONDS = 86_400
_CANCELLABLE = (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING)


def create_batch(svc: Services, *, owner: str | None, input_file_id: str, endpoint: str,
                 completion_window: str = "24h", metadata: dict[str, Any] | None = None,
                 model: str | None = None, provider: str | None = None,
                 estimate_pico: int | None = None) -> BatchRecord:
    """Record a new batch over an uploaded input file and nudge the workers.

    ``estimate_pico`` is the cost estimate when it was made at create (keys with a budget);
    otherwise the workers record one when they split the input.
    """
    now, batch_id = time.time(), new_batch_id()
    # Keyed by column name ("metadata" is the column of the ORM's metadata_).
    values: dict[str, Any] = {
        "id": batch_id, "owner_key_id": owner, "endpoint": endpoint,
        "input_file_id": input_file_id, "completion_window": completion_window, "model": model,
        "provider": provider, "status": BatchStatus.VALIDATING.value, "metadata": metadata,
        "created_at": int(now), "expires_at": int(now) + EXPIRY_SECONDS, "total": 0,
        "completed": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0,
        "cached_tokens": 0, "reasoning_tokens": 0, "stage": NEW_BATCH.stage,
        "cancel_requested": False, "updated_at": now, "due_at": due_at(NEW_BATCH, now),
        "estimate_pico": estimate_pico, "cost_pico": 0}
    # Core statements in one transaction (the API's hottest write: the ORM unit of work
    # cost more CPU than the database did); committed before the nudge. The batch row is
    # inserted only if the input file qualifies; when it does not, the file is read to say
    # why.
    record = repo.insert_batch(svc.engine, values, owner=owner)
    if record is None:
        _refuse_input(svc, input_file_id, owner)
    svc.nudge("prepare", batch_id)
    pipeline_log.info("batch %s created from file %s (endpoint %s)", batch_id, input_file_id,
                      endpoint)
    return record


def _refuse_input(svc: Services, file_id: str, owner: str | None) -> NoReturn:
    """Say why the input file cannot start a batch."""
    row = repo.input_file_facts(svc.engine, file_id)
    if row is None or row.deleted or (owner is not None and row.owner_key_id != owner):
        raise NotFoundError(f"No such File object: {file_id}", param="input_file_id")
    if row.kind != "input" or row.purpose != "batch":
        raise InvalidInputError(f"File {file_id} was not uploaded with purpose 'batch'",
                                param="input_file_id", code="invalid_file")
    raise NotFoundError(f"No such File object: {file_id}", param="input_file_id")


def get_batch(svc: Services, batch_id: str, *, owner: str | None) -> BatchRecord:
    """One batch visible to ``owner`` (a single autocommit SELECT: the API's hottest read)."""
    record = repo.read_batch(svc.engine, batch_id)
    if record is None or (owner is not None and record.owner_key_id != owner):
        raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
    return record


def list_batches(svc: Services, *, owner: str | None, limit: int = 20,
                 after: str | None = None) -> Page[BatchRecord]:
    """Batches visible to ``owner``, newest first; ``after`` is a batch id cursor."""
    with svc.sessions() as session:
        return repo.page_batches(session, owner=owner, limit=limit, after=after)


def cancel_batch(svc: Services, batch_id: str, *, owner: str | None) -> BatchRecord:
    """Ask for a batch to be cancelled (status ``cancelling``); the workers do the rest."""
    record = get_batch(svc, batch_id, owner=owner)
    if record.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
        return record
    stage: BatchStage | None = None
    # A worker may move the batch on (validating -> in_progress) between the CAS's read and
    # its write: try again while the batch is still cancellable.
    for _ in range(3):
        with svc.sessions.begin() as session:
            moved = transition_batch(session, batch_id, _CANCELLABLE, BatchStatus.CANCELLING,
                                     reason="cancel requested", cancel_requested=True,
                                     cancelling_at=int(time.time()))
            row = repo.get_batch_row(session, batch_id) if moved else None
            stage = BatchStage(row.stage) if row is not None else None
        if moved:
            break
        record = get_batch(svc, batch_id, owner=owner)
        if record.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            return record
        if record.status not in _CANCELLABLE:
            break
    if not moved:
        raise StateConflictError(f"Cannot cancel a batch with status '{record.status}'.")
    # The task that settles it: finalize once no part is live, else cancel.
    svc.nudge("finalize" if stage == BatchStage.FINALIZING else "cancel", batch_id)
    pipeline_log.info("batch %s cancel requested (was %s)", batch_id, record.status)
    return get_batch(svc, batch_id, owner=owner)

"""Statuses, allowed transitions, stages, and the public batch status derived from its parts.

A public batch (OpenAI's object, OpenAI's eight statuses) runs as one or more *parts*; each
part is one provider batch (more than one when the input is split, or when failed requests
are retried in a new part). Parts have finer statuses of their own. This module is the one
vocabulary of both: the pipeline's services read their status groups from here, and
``db.transitions`` refuses any compare-and-set write these tables do not allow.

The public status follows the parts (:func:`derive_batch_status`): ``validating`` until the
input is split, ``in_progress`` while any part is live, ``finalizing`` once none is, then
the terminal status of :func:`final_batch_status`. A status never moves to itself (that is
"no change").

Next to its status a batch has a *stage*: which pipeline task it waits for (prepare,
nothing while its parts run, finalize, nothing ever again) and when that task is due. Both
come from one table, :data:`BATCH_MOVES`: every allowed status move names the stage it
leaves the batch in and whether the batch is due now or parked, so a status write and its
stage write cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class BatchStatus(StrEnum):
    """The public batch status, exactly OpenAI's eight values."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class PartStatus(StrEnum):
    """Where one part (one provider batch) stands.

    The ``-ing`` states before ``submitted`` record *intent* before a provider side effect,
    so a worker that dies mid-step leaves a trace the next one checks ("did that upload /
    batch happen?") before repeating it. A part with no deployment room yet simply stays
    ``pending`` with a later ``next_poll_at``.
    """

    #: Created from the split input (or a retry); nothing sent to the provider yet.
    PENDING = "pending"
    #: Upload of the part's JSONL is in flight (intent recorded before the call).
    UPLOADING = "uploading"
    #: The provider holds the part's input file; its id is recorded.
    UPLOADED = "uploaded"
    #: Create-batch call is in flight (intent recorded; the part id is in the metadata).
    SUBMITTING = "submitting"
    #: The provider batch exists and is being polled until it ends.
    SUBMITTED = "submitted"
    #: The batch was cancelled; the provider was asked to cancel this part's batch, which
    #: is polled until it ends (its results so far are still ingested).
    CANCELLING = "cancelling"
    #: The provider batch ended; output and error files are being read into result rows.
    INGESTING = "ingesting"
    #: Every result of the provider batch is in SQL (the rest retried or closed). Terminal.
    INGESTED = "ingested"
    #: Rejected (by the provider, or no deployment serves the model). Terminal.
    FAILED = "failed"
    #: The batch was cancelled before this part reached the provider. Terminal.
    CANCELLED = "cancelled"
    #: The provider failed it for quota (``token_limit_exceeded``); its requests moved,
    #: at the same attempt, to a new part. Terminal.
    REQUEUED = "requeued"


_B = BatchStatus
_P = PartStatus

TERMINAL_BATCH_STATUSES = frozenset({_B.FAILED, _B.COMPLETED, _B.EXPIRED, _B.CANCELLED})
#: Batches whose work is not over (finalize may still settle them).
OPEN_BATCH_STATUSES = (_B.VALIDATING, _B.IN_PROGRESS, _B.FINALIZING, _B.CANCELLING)

#: Parts before their provider batch exists (driven by the submit task).
SUBMIT_PART_STATUSES = (_P.PENDING, _P.UPLOADING, _P.UPLOADED, _P.SUBMITTING)
#: Parts while the provider runs them (driven by the poll task).
POLL_PART_STATUSES = (_P.SUBMITTED, _P.CANCELLING)
#: Parts that still need work; the batch is finished only when none is left.
LIVE_PART_STATUSES = (*SUBMIT_PART_STATUSES, *POLL_PART_STATUSES, _P.INGESTING)
#: Parts that need no more work.
TERMINAL_PART_STATUSES = (_P.INGESTED, _P.FAILED, _P.CANCELLED, _P.REQUEUED)

class BatchStage(StrEnum):
    """Which pipeline task a batch waits for (the sweep's view; not a public status)."""

    #: Recorded, not yet split into parts: waits for ``prepare`` (or a cancel before it).
    ACCEPTED = "accepted"
    #: Split into parts that are live: parked until the last part ends.
    RUNNING = "running"
    #: No part is live: waits for ``finalize`` (counts, result files, final status).
    FINALIZING = "finalizing"
    #: Terminal: parked for good.
    FINALIZED = "finalized"


class Due(StrEnum):
    """When the task of a batch's stage should run after a move."""

    #: At once (the task is nudged; the sweep re-sends the nudge if it is lost).
    NOW = "now"
    #: Not until something else (a part's end) says so.
    PARKED = "parked"


#: A parked batch is due this far in the future (ten years: never, in practice).
PARKED_SECONDS = 10 * 365 * 86400.0


@dataclass(frozen=True)
class BatchMove:
    """Where a status move leaves the batch: its stage (None: unchanged) and when it is due."""

    stage: BatchStage | None
    due: Due


_S = BatchStage
_KEEP_NOW = BatchMove(None, Due.NOW)
_DONE = BatchMove(_S.FINALIZED, Due.PARKED)

#: A new batch: recorded, waiting for prepare.
NEW_BATCH = BatchMove(_S.ACCEPTED, Due.NOW)

#: Every allowed batch status move, and the stage it leaves the batch in. A cancel keeps the
#: stage (the cancel task reads it: before the split there is nothing to stop) and is due
#: now; a terminal status is parked for good.
BATCH_MOVES: dict[BatchStatus, dict[BatchStatus, BatchMove]] = {
    # Split into parts, rejected input, or a cancel before the split.
    _B.VALIDATING: {_B.IN_PROGRESS: BatchMove(_S.RUNNING, Due.PARKED), _B.FAILED: _DONE,
                    _B.CANCELLING: _KEEP_NOW},
    # Every batch passes through finalizing: the counts and result files are written there.
    _B.IN_PROGRESS: {_B.FINALIZING: BatchMove(_S.FINALIZING, Due.NOW),
                     _B.CANCELLING: _KEEP_NOW},
    _B.FINALIZING: {_B.COMPLETED: _DONE, _B.EXPIRED: _DONE, _B.FAILED: _DONE,
                    _B.CANCELLING: _KEEP_NOW},
    _B.CANCELLING: {_B.CANCELLED: _DONE},
    _B.FAILED: {},
    _B.COMPLETED: {},
    _B.EXPIRED: {},
    _B.CANCELLED: {},
}

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    status: frozenset(moves) for status, moves in BATCH_MOVES.items()}

#: The stages a batch may be at while the last of its parts ends (prepare is over).
PARTS_DONE_FROM = (_S.ACCEPTED, _S.RUNNING)
#: Once no part is live the batch waits for finalize, due now (a cancelling batch keeps
#: its status: finalize ends it ``cancelled``).
PARTS_DONE = BatchMove(_S.FINALIZING, Due.NOW)


def batch_move(current: BatchStatus | str, new: BatchStatus | str) -> BatchMove:
    """The stage and due time a move leaves the batch in (KeyError: the move is illegal)."""
    return BATCH_MOVES[BatchStatus(current)][BatchStatus(new)]


def due_at(move: BatchMove, now: float) -> float:
    """The ``due_at`` time of a batch after ``move`` at ``now``."""
    return now if move.due == Due.NOW else now + PARKED_SECONDS


#: The task a batch at each stage waits for (None: nothing to run).
STAGE_TASK: dict[BatchStage, str | None] = {
    _S.ACCEPTED: "prepare", _S.RUNNING: None, _S.FINALIZING: "finalize", _S.FINALIZED: None}
#: Stages at which the cancel task has work (before the split, or parts still running).
CANCEL_STAGES = (_S.ACCEPTED, _S.RUNNING)


PART_TRANSITIONS: dict[PartStatus, frozenset[PartStatus]] = {
    # Failed: no deployment serves the model; cancelled: the batch was cancelled first.
    _P.PENDING: frozenset({_P.UPLOADING, _P.FAILED, _P.CANCELLED}),
    # Transient errors keep the status (a later retry looks for the effect first);
    # only a rejection by the provider fails the part.
    _P.UPLOADING: frozenset({_P.UPLOADED, _P.FAILED}),
    _P.UPLOADED: frozenset({_P.SUBMITTING, _P.FAILED}),
    _P.SUBMITTING: frozenset({_P.SUBMITTED, _P.FAILED}),
    # Every provider end (failed included) is read by ingest, which decides what it means.
    _P.SUBMITTED: frozenset({_P.CANCELLING, _P.INGESTING}),
    _P.CANCELLING: frozenset({_P.INGESTING}),
    _P.INGESTING: frozenset({_P.INGESTED, _P.FAILED, _P.REQUEUED}),
    _P.INGESTED: frozenset(),
    _P.FAILED: frozenset(),
    _P.CANCELLED: frozenset(),
    _P.REQUEUED: frozenset(),
}


def can_transition_batch(current: BatchStatus | str, new: BatchStatus | str) -> bool:
    """May a batch move from ``current`` to ``new``? (Never to itself.)"""
    return BatchStatus(new) in BATCH_TRANSITIONS[BatchStatus(current)]


def can_transition_part(current: PartStatus | str, new: PartStatus | str) -> bool:
    """May a part move from ``current`` to ``new``? (Never to itself.)"""
    return PartStatus(new) in PART_TRANSITIONS[PartStatus(current)]


# ---- provider status -> part status -------------------------------------------------

#: Provider batches in these states never change again.
PROVIDER_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
QUOTA_ERROR_CODE = "token_limit_exceeded"


def is_provider_terminal(provider_status: str) -> bool:
    """Has the provider batch stopped changing?"""
    return provider_status.lower() in PROVIDER_TERMINAL


def part_status_after_poll(current: PartStatus | str, provider_status: str) -> PartStatus:
    """The status a polled part (``submitted`` / ``cancelling``) should have now.

    Any provider end means "read what it left" (``ingesting``), a ``failed`` one included:
    ingest tells a quota failure from a rejection (:func:`part_status_after_ingest`).
    Anything else, a status we do not know included, keeps the part where it is.
    """
    current = PartStatus(current)
    if current not in POLL_PART_STATUSES:
        raise ValueError(f"a {current} part is not polled")
    return PartStatus.INGESTING if is_provider_terminal(provider_status) else current


def part_status_after_ingest(provider_status: str | None, *, error_codes: Iterable[str],
                             has_output: bool) -> PartStatus:
    """How an ``ingesting`` part ends, from what its provider batch said.

    ``failed`` with ``token_limit_exceeded`` is not the requests' fault: they move to a new
    part (``requeued``). ``failed`` with no output file is a rejection of the input
    (``failed``). Everything else has results to read (``ingested``).
    """
    if (provider_status or "").lower() == "failed":
        if QUOTA_ERROR_CODE in set(error_codes):
            return PartStatus.REQUEUED
        if not has_output:
            return PartStatus.FAILED
    return PartStatus.INGESTED


# ---- the public status --------------------------------------------------------------

def final_batch_status(*, cancel_requested: bool, any_part_failed: bool,
                       window_closed: bool, expired_requests: int) -> BatchStatus:
    """The terminal status of a batch whose parts are all done (first match wins).

    A user's cancel ends ``cancelled``; any failed part makes the batch ``failed``; past
    its completion window with requests left ``batch_expired`` it is ``expired`` (partial
    results kept); otherwise ``completed``.
    """
    if cancel_requested:
        return BatchStatus.CANCELLED
    if any_part_failed:
        return BatchStatus.FAILED
    if window_closed and expired_requests > 0:
        return BatchStatus.EXPIRED
    return BatchStatus.COMPLETED


def derive_batch_status(current: BatchStatus | str, parts: Iterable[PartStatus | str], *,
                        cancel_requested: bool, prepared: bool, validation_failed: bool,
                        finalized: bool, window_closed: bool = False,
                        expired_requests: int = 0) -> BatchStatus:
    """The public status a batch should have now, from its parts. Pure.

    Inputs: ``current`` (the stored status: the result is always ``current`` or a legal
    move from it, so a terminal status never changes); ``parts`` (every part's status,
    retries included); ``cancel_requested``; ``prepared`` (the input was split into parts);
    ``validation_failed`` (the input was rejected); ``finalized`` (counts and result files
    are written, or for a cancel: nothing is left to settle); ``window_closed`` and
    ``expired_requests`` (see :func:`final_batch_status`).

    Rules, first match wins: rejected input -> ``failed``; cancel -> ``cancelling`` until
    finalized, then ``cancelled``; not prepared -> ``validating``; a live part ->
    ``in_progress``; not finalized -> ``finalizing``; else :func:`final_batch_status`. A
    batch seen only at its end still passes through ``finalizing``.
    """
    current = BatchStatus(current)
    target = _target_status([PartStatus(p) for p in parts], cancel_requested=cancel_requested,
                            prepared=prepared, validation_failed=validation_failed,
                            finalized=finalized, window_closed=window_closed,
                            expired_requests=expired_requests)
    if target == current or can_transition_batch(current, target):
        return target
    if target in TERMINAL_BATCH_STATUSES and can_transition_batch(current, _B.FINALIZING):
        return BatchStatus.FINALIZING
    return current


def _target_status(parts: list[PartStatus], *, cancel_requested: bool, prepared: bool,
                   validation_failed: bool, finalized: bool, window_closed: bool,
                   expired_requests: int) -> BatchStatus:
    if validation_failed:
        return BatchStatus.FAILED
    if cancel_requested:
        return BatchStatus.CANCELLED if finalized else BatchStatus.CANCELLING
    if not prepared:
        return BatchStatus.VALIDATING
    if any(p in LIVE_PART_STATUSES for p in parts):
        return BatchStatus.IN_PROGRESS
    if not finalized:
        return BatchStatus.FINALIZING
    return final_batch_status(cancel_requested=False,
                              any_part_failed=PartStatus.FAILED in parts,
                              window_closed=window_closed, expired_requests=expired_requests)

"""Statuses, allowed transitions, and the public batch status derived from its parts.

A public batch (OpenAI's object, OpenAI's eight statuses) runs as one or more *parts*; each
part is one provider batch (more than one when the input is split, or when failed requests
are retried in a new part). Parts have finer statuses of their own. The public status is a
pure function of the parts plus a few facts about the batch (:func:`derive_batch_status`),
so every worker computes the same answer from the same rows.

Status writes are compare-and-set; :func:`can_transition_batch` / :func:`can_transition_part`
say which writes are legal. A status never moves to itself (that is "no change").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

    The ``-ing`` states record *intent* before a provider side effect, so a worker that
    dies mid-step leaves a trace the next one checks ("did that upload / batch happen?")
    before repeating it.
    """

    #: Created from the split input (or a retry); nothing sent to the provider yet.
    PENDING = "pending"
    #: No deployment has enqueued-token room (or the provider said
    #: ``token_limit_exceeded``); resubmitted after a wait. Not a failure.
    WAITING_QUOTA = "waiting_quota"
    #: Upload of the part's JSONL is in flight (intent recorded before the call).
    UPLOADING = "uploading"
    #: The provider holds the part's input file; its id is recorded.
    UPLOADED = "uploaded"
    #: Create-batch call is in flight (intent recorded; the part id is in the metadata).
    SUBMITTING = "submitting"
    #: The provider batch exists and is being polled until it ends.
    SUBMITTED = "submitted"
    #: The provider batch ended (completed / expired / cancelled); output and error files
    #: are being downloaded into result rows.
    INGESTING = "ingesting"
    #: Every result of the provider batch is in SQL. Terminal.
    INGESTED = "ingested"
    #: The provider rejected the part (validation failure) or it cannot proceed. Terminal.
    FAILED = "failed"
    #: The batch was cancelled before this part reached the provider. Terminal.
    CANCELLED = "cancelled"


TERMINAL_BATCH_STATUSES = frozenset({BatchStatus.FAILED, BatchStatus.COMPLETED,
                                     BatchStatus.EXPIRED, BatchStatus.CANCELLED})
TERMINAL_PART_STATUSES = frozenset({PartStatus.INGESTED, PartStatus.FAILED,
                                    PartStatus.CANCELLED})
#: Parts still doing something (or waiting to).
LIVE_PART_STATUSES = frozenset(PartStatus) - TERMINAL_PART_STATUSES
#: Parts that have reached the provider as a batch: the public batch is running.
STARTED_PART_STATUSES = frozenset({PartStatus.SUBMITTED, PartStatus.INGESTING,
                                   PartStatus.INGESTED})

_B = BatchStatus
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    _B.VALIDATING: frozenset({_B.IN_PROGRESS, _B.FINALIZING, _B.FAILED, _B.CANCELLING}),
    _B.IN_PROGRESS: frozenset({_B.FINALIZING, _B.FAILED, _B.CANCELLING}),
    _B.FINALIZING: frozenset({_B.COMPLETED, _B.EXPIRED, _B.CANCELLING}),
    _B.CANCELLING: frozenset({_B.CANCELLED}),
    _B.FAILED: frozenset(),
    _B.COMPLETED: frozenset(),
    _B.EXPIRED: frozenset(),
    _B.CANCELLED: frozenset(),
}

_P = PartStatus
_STOP = frozenset({_P.FAILED, _P.CANCELLED})
PART_TRANSITIONS: dict[PartStatus, frozenset[PartStatus]] = {
    _P.PENDING: frozenset({_P.UPLOADING, _P.WAITING_QUOTA}) | _STOP,
    # After the wait: upload (pending) or resubmit the already uploaded file.
    _P.WAITING_QUOTA: frozenset({_P.PENDING, _P.UPLOADED, _P.SUBMITTING}) | _STOP,
    # Back to pending when the upload is known not to have happened (transient error).
    _P.UPLOADING: frozenset({_P.UPLOADED, _P.PENDING}) | _STOP,
    _P.UPLOADED: frozenset({_P.SUBMITTING, _P.WAITING_QUOTA}) | _STOP,
    # Back to uploaded when no provider batch carries our part id; waiting_quota on a
    # fail-fast token_limit_exceeded (Azure answers 400 at create).
    _P.SUBMITTING: frozenset({_P.SUBMITTED, _P.UPLOADED, _P.WAITING_QUOTA}) | _STOP,
    # Cancelling a submitted part goes through the provider and ends in ingesting.
    _P.SUBMITTED: frozenset({_P.INGESTING, _P.WAITING_QUOTA, _P.FAILED}),
    _P.INGESTING: frozenset({_P.INGESTED, _P.FAILED}),
    _P.INGESTED: frozenset(),
    _P.FAILED: frozenset(),
    _P.CANCELLED: frozenset(),
}


def can_transition_batch(current: BatchStatus | str, new: BatchStatus | str) -> bool:
    """May a batch move from ``current`` to ``new``? (Never to itself.)"""
    return BatchStatus(new) in BATCH_TRANSITIONS[BatchStatus(current)]


def can_transition_part(current: PartStatus | str, new: PartStatus | str) -> bool:
    """May a part move from ``current`` to ``new``? (Never to itself.)"""
    return PartStatus(new) in PART_TRANSITIONS[PartStatus(current)]


# ---- provider status -> part status -------------------------------------------------

PROVIDER_ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
#: Provider batches in these states have output/error files worth ingesting (maybe none).
PROVIDER_INGESTABLE = frozenset({"completed", "expired", "cancelled"})
PROVIDER_TERMINAL = PROVIDER_INGESTABLE | {"failed"}
QUOTA_ERROR_CODE = "token_limit_exceeded"


def is_provider_terminal(provider_status: str) -> bool:
    """Has the provider batch stopped changing?"""
    return provider_status.lower() in PROVIDER_TERMINAL


def part_status_after_poll(provider_status: str, *,
                           error_codes: Iterable[str] = ()) -> PartStatus:
    """The part status a poll result implies for a ``submitted`` part.

    Active provider states keep the part ``submitted`` (as does a status we do not know:
    keep polling rather than guess). ``completed``/``expired``/``cancelled`` mean there are
    results to ingest. ``failed`` is a validation failure, except ``token_limit_exceeded``,
    which means "wait for quota and submit again".
    """
    status = provider_status.lower()
    if status in PROVIDER_INGESTABLE:
        return PartStatus.INGESTING
    if status == "failed":
        if QUOTA_ERROR_CODE in error_codes:
            return PartStatus.WAITING_QUOTA
        return PartStatus.FAILED
    return PartStatus.SUBMITTED


# ---- the public status --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PartView:
    """What the derivation needs to know about one part."""

    status: PartStatus


def derive_batch_status(current: BatchStatus, parts: Sequence[PartView], *,
                        cancel_requested: bool, prepared: bool, validation_failed: bool,
                        pending_retries: int, finalized: bool,
                        expired_requests: int = 0) -> BatchStatus:
    """The public status a batch should have now. Pure; call it after every part change.

    Inputs:
      * ``current`` -- the stored status. A terminal status never changes, and the result
        is always ``current`` or a legal move from it (:data:`BATCH_TRANSITIONS`).
      * ``parts`` -- every part of the batch, retries included.
      * ``cancel_requested`` -- the user asked to cancel.
      * ``prepared`` -- the input was validated and split into parts.
      * ``validation_failed`` -- the input file was rejected (bad JSONL ...).
      * ``pending_retries`` -- failed requests that will get another attempt but are not yet
        in a part; while > 0 the batch is not done.
      * ``finalized`` -- request counts, usage and our output/error files are written.
      * ``expired_requests`` -- requests whose *final* result is ``batch_expired`` (the
        provider's window ended and no attempt is left).

    Rules, first match wins:
      1. terminal ``current`` stays; ``validation_failed`` -> ``failed``;
      2. cancel requested: ``cancelling`` while any part is live or results are not
         finalized, then ``cancelled`` (partial results are kept);
      3. not ``prepared`` -> ``validating``;
      4. every part terminal and no pending retry: all parts ``failed`` -> ``failed``;
         else not ``finalized`` -> ``finalizing``; else ``expired`` if any request ended
         expired, otherwise ``completed``;
      5. otherwise ``in_progress`` once any part reached the provider (``submitted`` or
         later), ``validating`` before that.
    """
    target = _target_status(current, parts, cancel_requested=cancel_requested,
                            prepared=prepared, validation_failed=validation_failed,
                            pending_retries=pending_retries, finalized=finalized,
                            expired_requests=expired_requests)
    if target == current or can_transition_batch(current, target):
        return target
    # A batch seen only now at its end still passes through finalizing first.
    if target in (BatchStatus.COMPLETED, BatchStatus.EXPIRED) and can_transition_batch(
            current, BatchStatus.FINALIZING):
        return BatchStatus.FINALIZING
    return current


def _target_status(current: BatchStatus, parts: Sequence[PartView], *,
                   cancel_requested: bool, prepared: bool, validation_failed: bool,
                   pending_retries: int, finalized: bool,
                   expired_requests: int) -> BatchStatus:
    if current in TERMINAL_BATCH_STATUSES:
        return current
    if validation_failed:
        return BatchStatus.FAILED
    live = any(p.status in LIVE_PART_STATUSES for p in parts)
    if cancel_requested or current == BatchStatus.CANCELLING:
        return BatchStatus.CANCELLING if live or not finalized else BatchStatus.CANCELLED
    if not prepared or not parts:
        return BatchStatus.VALIDATING
    if not live and pending_retries <= 0:
        if all(p.status == PartStatus.FAILED for p in parts):
            return BatchStatus.FAILED
        if not finalized:
            return BatchStatus.FINALIZING
        return BatchStatus.EXPIRED if expired_requests > 0 else BatchStatus.COMPLETED
    started = current != BatchStatus.VALIDATING or any(
        p.status in STARTED_PART_STATUSES for p in parts)
    return BatchStatus.IN_PROGRESS if started else BatchStatus.VALIDATING

"""submit: upload a part and create its provider batch, exactly once, whatever crashes.

Each side effect is preceded by a committed intent (status ``uploading`` / ``submitting``
plus ``side_effect_attempts``). A task that finds a part already in such a status did not
see the effect happen, so it first looks for it at the provider (a file named
``<part_id>.jsonl``, a batch whose metadata names the part) and only then repeats it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from typing import IO

from sqlalchemy.orm import Session

from batchyard.db import batches, parts
from batchyard.db.models import BatchRow, PartRow
from batchyard.db.transitions import claim_part, transition_part
from batchyard.domain.jsonl import rewrite_model
from batchyard.domain.lifecycle import SUBMIT_PART_STATUSES, PartStatus
from batchyard.domain.polling import first_poll_delay
from batchyard.domain.routing import Deployment
from batchyard.errors import ProviderAuthError, ProviderRejectedError, ProviderTransientError
from batchyard.providers.base import ProviderBatch
from batchyard.providers.client import SyncProviderClient
from batchyard.services import anthropic_parts, costs
from batchyard.services.container import Services
from batchyard.services.crash import crash_point
from batchyard.services.routing import pick_deployment
from batchyard.services.state import pipeline_log, request_finalize_if_done

logger = logging.getLogger(__name__)


@dataclass
class _Step:
    part: PartRow
    batch: BatchRow
    #: True when this very task recorded the intent (nothing to look for at the provider).
    fresh: bool = False


def submit_part(svc: Services, part_id: str) -> str | None:
    """Drive one part to ``submitted``; returns its final status (None when not claimed)."""
    with svc.sessions.begin() as session:
        part = parts.get_part(session, part_id)
        # The lease covers one provider call (a re-upload after a crash included), so the
        # redelivered nudge cannot start the same side effect while this one is in flight.
        if part is None or not claim_part(session, part_id, SUBMIT_PART_STATUSES,
                                          intent_lease(svc, part)):
            return None
    fresh = False
    while True:
        step = _load(svc, part_id, fresh)
        if step is None or step.part.status not in SUBMIT_PART_STATUSES:
            return step.part.status if step else None
        try:
            fresh = _advance(svc, step)
        except anthropic_parts.AmbiguousCreate as exc:
            anthropic_parts.park_ambiguous(svc, step.part, exc)
            return "parked"
        except ProviderTransientError as exc:
            _retry_later(svc, part_id, exc)
            return "retry"
        except (ProviderRejectedError, ProviderAuthError) as exc:
            _fail(svc, step.part, exc)
            return PartStatus.FAILED
        if not fresh:
            final = _load(svc, part_id, False)
            return final.part.status if final else None


def _load(svc: Services, part_id: str, fresh: bool) -> _Step | None:
    with svc.sessions() as session:
        part = parts.get_part(session, part_id)
        batch = batches.get_batch_row(session, part.batch_id) if part else None
        return _Step(part, batch, fresh) if part and batch else None


def _advance(svc: Services, step: _Step) -> bool:
    status = step.part.status
    if status == PartStatus.PENDING:
        return _start(svc, step)
    if status == PartStatus.UPLOADING:
        return _upload(svc, step)
    if status == PartStatus.UPLOADED:
        return _record_intent(svc, step.part, PartStatus.UPLOADED, PartStatus.SUBMITTING)
    return _create(svc, step)


def _start(svc: Services, step: _Step) -> bool:
    """Choose a deployment and record the intent to upload (True: go on uploading)."""
    part, batch = step.part, step.batch
    stopped = False
    with svc.sessions.begin() as session:
        if batch.cancel_requested:
            transition_part(session, part.id, PartStatus.PENDING, PartStatus.CANCELLED,
                            reason="batch cancelled")
            finalize = request_finalize_if_done(session, batch.id)
        elif (over := costs.cap_refusal(session, batch, part)) is not None:
            stopped = costs.stop_for_budget(session, batch.id, over)
            transition_part(session, part.id, PartStatus.PENDING, PartStatus.CANCELLED,
                            reason=over)
            finalize = request_finalize_if_done(session, batch.id)
        elif not svc.deployments.for_model(batch.model, batch.provider):
            message = f"no deployment serves model {batch.model!r}"
            transition_part(session, part.id, PartStatus.PENDING, PartStatus.FAILED, reason=message,
                            provider_errors={"data": [{"code": "model_not_found",
                                                       "message": message, "line": None}]})
            finalize = request_finalize_if_done(session, batch.id)
            pipeline_log.warning("batch %s part %d failed: %s", batch.id, part.seq, message)
        else:
            dep = pick_deployment(svc, session, model=batch.model, provider=batch.provider,
                                  tokens=part.estimated_tokens)
            if dep is None:
                _wait_for_room(svc, session, part.id)
                return False
            return transition_part(
                session, part.id, PartStatus.PENDING, PartStatus.UPLOADING, reason=f"to {dep.id}",
                deployment=dep.id, side_effect_attempts=part.side_effect_attempts + 1,
                next_poll_at=time.time() + intent_lease(svc, part))
    if stopped:
        svc.nudge("cancel", batch.id)
    if finalize:
        svc.nudge("finalize", batch.id)
    return False


def _wait_for_room(svc: Services, session: Session, part_id: str) -> None:
    # Nobody has room now: look again once a quota block may have lifted.
    cfg = svc.settings.pipeline
    parts.set_next_poll(session, part_id,
                        time.time() + min(cfg.quota_retry_seconds, cfg.poll_min_seconds),
                        error="waiting for deployment capacity")


def intent_lease(svc: Services, part: PartRow) -> float:
    """How long a recorded intent keeps other workers away: long enough for the one call it
    covers to finish or time out (an upload at >= 1 MB/s), so a sweep can never start the
    same side effect while the first is still in flight."""
    http = svc.settings.http
    return (svc.settings.pipeline.stale_seconds + http.connect_timeout + http.read_timeout
            + part.byte_size / 1_000_000)


def _upload(svc: Services, step: _Step) -> bool:
    part = step.part
    if anthropic_parts.is_anthropic(svc, part.deployment):  # no files: requests go inline
        return _uploaded(svc, part, None)
    provider = svc.providers.for_deployment(str(part.deployment), once=True)
    filename = f"{part.id}.jsonl"
    file_id = None if step.fresh else _find_upload(provider, filename)
    if file_id is None and not step.fresh:
        anthropic_parts.wait_for_list(svc, part.id, PartStatus.UPLOADING)
    if file_id is None:
        dep = svc.deployments.get(str(part.deployment))
        with tempfile.TemporaryFile() as tmp:
            _write_part_file(svc, part, dep, tmp)
            tmp.seek(0)
            file_id = provider.upload_file(tmp, filename=filename, purpose="batch").id
        logger.info("part.uploaded", extra={"part_id": part.id, "file_id": file_id})
    crash_point(svc.settings, "after_upload")
    return _uploaded(svc, part, file_id)


def _uploaded(svc: Services, part: PartRow, file_id: str | None) -> bool:
    with svc.sessions.begin() as session:
        if not transition_part(session, part.id, PartStatus.UPLOADING, PartStatus.UPLOADED,
                               provider_file_id=file_id):
            return False
    return _record_intent(svc, part, PartStatus.UPLOADED, PartStatus.SUBMITTING)


def _record_intent(svc: Services, part: PartRow, src: PartStatus, dst: PartStatus) -> bool:
    with svc.sessions.begin() as session:
        row = parts.get_part(session, part.id)
        attempts = (row.side_effect_attempts if row else 0) + 1
        return transition_part(session, part.id, src, dst, side_effect_attempts=attempts,
                               next_poll_at=time.time() + intent_lease(svc, part))


def _create(svc: Services, step: _Step) -> bool:
    part = step.part
    dep = svc.deployments.get(str(part.deployment))
    if dep.provider == "anthropic":
        found = anthropic_parts.create_batch(svc, part, dep, fresh=step.fresh)
    else:
        found = _create_with_metadata(svc, step)
    crash_point(svc.settings, "after_create")
    cfg = svc.settings.pipeline
    with svc.sessions.begin() as session:
        fresh = batches.get_batch_row(session, part.batch_id)
        # A cancel that came in during the submit is sent to the provider at the next tick.
        first = 0.0 if fresh is not None and fresh.cancel_requested else first_poll_delay(
            first_s=cfg.first_poll_seconds, min_s=cfg.poll_min_seconds)
        moved = transition_part(session, part.id, PartStatus.SUBMITTING, PartStatus.SUBMITTED,
                                provider_batch_id=found.id, provider_status=found.status,
                                poll_interval=first, next_poll_at=time.time() + first,
                                last_error=None)
    if moved:
        pipeline_log.info("batch %s part %d (%d requests) submitted to deployment %s as "
                          "provider batch %s", part.batch_id, part.seq, part.request_count,
                          part.deployment, found.id)
    return False


def _create_with_metadata(svc: Services, step: _Step) -> ProviderBatch:
    part, batch = step.part, step.batch
    provider = svc.providers.for_deployment(str(part.deployment), once=True)
    found = None if step.fresh else _find_batch(provider, part.id)
    if found is None and not step.fresh:
        anthropic_parts.wait_for_list(svc, part.id, PartStatus.SUBMITTING)
    if found is None:
        metadata = {"batchyard_part_id": part.id, "batchyard_batch_id": batch.id}
        found = provider.create_batch(input_file_id=str(part.provider_file_id),
                                      endpoint=batch.endpoint,
                                      completion_window=batch.completion_window,
                                      metadata=metadata)
        logger.info("part.created", extra={"part_id": part.id, "provider_batch": found.id})
    return found


def _find_upload(provider: SyncProviderClient, filename: str) -> str | None:
    for pfile in provider.list_files(purpose="batch"):
        if pfile.filename == filename:
            return pfile.id
    return None


def _find_batch(provider: SyncProviderClient, part_id: str) -> ProviderBatch | None:
    for pbatch in provider.list_batches():
        if (pbatch.metadata or {}).get("batchyard_part_id") == part_id:
            return pbatch
    return None


def _write_part_file(svc: Services, part: PartRow, dep: Deployment, out: IO[bytes]) -> None:
    with svc.sessions() as session:
        for body in parts.iter_request_bodies(session, part.id):
            raw = body.encode("utf-8")
            line = rewrite_model(raw, dep.model) if dep.rewrites_model else raw
            out.write(line + b"\n")


def _retry_later(svc: Services, part_id: str, exc: ProviderTransientError) -> None:
    delay = max(exc.retry_after or 0.0, svc.settings.pipeline.poll_min_seconds)
    with svc.sessions.begin() as session:
        parts.set_next_poll(session, part_id, time.time() + delay, error=str(exc))
    pipeline_log.warning("part %s: the provider did not take it (will retry in %.0f s): %s",
                         part_id, delay, exc)


def _fail(svc: Services, part: PartRow, exc: Exception) -> None:
    code = getattr(exc, "code", None) or "provider_rejected"
    error = {"code": code, "message": getattr(exc, "message", str(exc)), "line": None}
    with svc.sessions.begin() as session:
        if transition_part(session, part.id, SUBMIT_PART_STATUSES, PartStatus.FAILED,
                           reason=str(exc)[:500], provider_errors={"data": [error]},
                           last_error=str(exc)[:1000]):
            request_finalize_if_done(session, part.batch_id)
    svc.nudge("finalize", part.batch_id)
    pipeline_log.warning("batch %s part %d: rejected by deployment %s: %s (%s)",
                         part.batch_id, part.seq, part.deployment, error["message"], code)

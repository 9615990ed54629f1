"""One scheduled run's side effects, through the pipeline's own services.

``submit`` evaluates the source fully, stores the file, then creates the batch; if creating
the batch fails the stored file is deleted again, so a failed run leaves nothing behind.
``observe_run_batches`` notes when a run's batch has ended (overlap policy, run history) and
announces it to the schedule's webhook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from batchyard.db import schedules as repo
from batchyard.domain.schedule import TERMINAL_BATCH_STATUSES, local_time, parse_timezone
from batchyard.domain.schedule_records import ScheduleRecord
from batchyard.errors import NotFoundError
from batchyard.services import batches, costs, files, notifications
from batchyard.services.container import Services
from batchyard.services.schedule_sources import materialize

logger = logging.getLogger(__name__)

#: A run still "started" after this long lost its scheduler (killed mid-run).
RUN_TIMEOUT_SECONDS = 3 * 3600.0


@dataclass(frozen=True)
class RunOutcome:
    """A batch was created (``batch_id``), or nothing was due (``reason``)."""

    batch_id: str | None
    file_id: str | None
    reason: str | None = None


def batch_metadata(schedule: ScheduleRecord, fire_time: int) -> dict[str, str]:
    """The schedule's metadata plus where the batch came from."""
    fire_local = local_time(fire_time, parse_timezone(schedule.timezone))
    return {**(schedule.metadata or {}), "batchyard_schedule_id": schedule.id,
            "batchyard_fire_time": fire_local.isoformat()}


def submit(svc: Services, schedule: ScheduleRecord, fire_time: int) -> RunOutcome:
    """Create this run's batch. Raises the source's error with nothing recorded."""
    if schedule.source.get("kind") == "file":
        file_id = str(schedule.source["file_id"])
        files.get_file(svc, file_id, owner=schedule.owner)  # NotFoundError when it is gone
        return RunOutcome(_create_batch(svc, schedule, file_id, fire_time), file_id)
    stream, count, filename = materialize(schedule, fire_time)
    with stream:
        if count == 0:
            return RunOutcome(None, None, "source produced no requests")
        record = files.create_file(svc, owner=schedule.owner, filename=filename,
                                   purpose="batch", stream=stream)
    try:
        return RunOutcome(_create_batch(svc, schedule, record.id, fire_time), record.id)
    except Exception:
        files.delete_file(svc, record.id, owner=schedule.owner)
        raise


def _create_batch(svc: Services, schedule: ScheduleRecord, file_id: str, fire_time: int) -> str:
    # A schedule spends its owner's money like an API create does: the key's budget is
    # checked the same way (the run fails with the refusal, and its file is removed).
    estimate = costs.check_key_budget(svc, schedule.owner, input_file_id=file_id,
                                      endpoint=schedule.endpoint, model=schedule.model,
                                      provider=None)
    batch = batches.create_batch(
        svc, owner=schedule.owner, input_file_id=file_id, endpoint=schedule.endpoint,
        completion_window=schedule.completion_window,
        metadata=batch_metadata(schedule, fire_time), model=schedule.model,
        estimate_pico=estimate)
    return str(batch.id)


def batch_status(svc: Services, batch_id: str) -> str | None:
    """The public status of a batch (None when it no longer exists)."""
    try:
        return str(batches.get_batch(svc, batch_id, owner=None).status)
    except NotFoundError:
        return None


def observe_run_batches(svc: Services, *, now: float) -> int:
    """Note runs whose batch has ended and announce the end; returns how many ended."""
    with svc.sessions() as session:
        waiting = repo.runs_awaiting_batch_end(session)
    ended = 0
    for run in waiting:
        assert run.batch_id is not None  # only submitted runs are returned
        status = batch_status(svc, run.batch_id)
        if status is not None and status not in TERMINAL_BATCH_STATUSES:
            continue
        with svc.sessions.begin() as session:
            repo.set_run_batch_status(session, run.id, status or "deleted")
        if status is not None:
            notifications.announce_batch_end(svc, run.batch_id, now=now)
        ended += 1
    return ended


def recover_interrupted_runs(svc: Services, *, now: float,
                             timeout: float = RUN_TIMEOUT_SECONDS) -> int:
    """Settle runs whose scheduler died after claiming them; returns how many.

    If the run got as far as creating its batch (found by the metadata it put on it), the run
    is recorded as submitted; otherwise as failed, so its history never shows a run "started"
    forever. The slot itself is not fired again: its run row still holds the unique key.
    """
    with svc.sessions() as session:
        stale = repo.stale_started_runs(session, before=now - timeout)
    for run in stale:
        with svc.sessions.begin() as session:
            schedule = repo.get_schedule(session, run.schedule_id)
            fired = batch_metadata(schedule, run.fire_time)["batchyard_fire_time"] \
                if schedule is not None else ""
            batch_id = repo.batch_created_for_run(session, run.schedule_id,
                                                  fire_time_iso=fired, since=run.created_at - 60)
            status = "submitted" if batch_id else "failed"
            repo.finish_run(session, run.id, status=status, now=now, batch_id=batch_id,
                            reason="recovered: the scheduler stopped during this run")
        logger.warning("schedule.run.recovered", extra={"run_id": run.id, "status": status})
    return len(stale)

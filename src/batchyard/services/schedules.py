"""Schedules: create and manage recurring batches, and the scheduler tick that fires them.

Exactly once per (schedule, fire time): a run row is inserted, in its own transaction, before
anything else happens; the schedule_runs UNIQUE key makes the second of two schedulers fail
that INSERT (IntegrityError) and walk away. Batches are created through the pipeline's own
services (files.create_file + batches.create_batch). Every function takes ``now`` (a value or
a callable) so tests drive the clock.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy.exc import IntegrityError

from batchyard.db import schedules as repo
from batchyard.domain.schedule import (
    local_time,
    next_fire_time,
    overlap_skip_reason,
    parse_timezone,
    plan_tick,
    render_path,
    validate_cron,
)
from batchyard.domain.schedule_records import ScheduleRecord, ScheduleRunRecord
from batchyard.errors import BatchyardError, InvalidInputError, NotFoundError, PermissionDeniedError
from batchyard.services import notifications, schedule_runs
from batchyard.services.container import Services
from batchyard.services.schedule_sources import CODE_SOURCE_KINDS, Source

logger = logging.getLogger(__name__)

Clock = float | Callable[[], float] | None
#: Batch metadata keys a schedule adds (OpenAI allows 16 keys in all).
RESERVED_METADATA = ("batchyard_schedule_id", "batchyard_fire_time")


def resolve_now(now: Clock) -> float:
    """``now`` as unix seconds: a value, a callable clock, or the system clock."""
    if now is None:
        return time.time()
    return float(now()) if callable(now) else float(now)


class ScheduleSpec(BaseModel):
    """What a user gives to create a schedule (API body, CLI options)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    cron: str
    timezone: str = "UTC"
    source: Source = Field(discriminator="kind")
    endpoint: str = "/v1/chat/completions"
    model: str | None = Field(default=None, max_length=200)
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: SecretStr | None = None
    overlap: Literal["skip", "allow"] = "skip"
    catch_up: Literal["once", "skip"] = "once"
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            return validate_cron(value)
        except InvalidInputError as exc:
            raise ValueError(exc.message) from exc

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            parse_timezone(value)
        except InvalidInputError as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and len(value) > 16 - len(RESERVED_METADATA):
            raise ValueError("metadata may hold at most 14 keys (batchyard adds 2)")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value or None


def create_schedule(svc: Services, spec: ScheduleSpec, *, owner: str | None,
                    allow_code_sources: bool = True, now: Clock = None) -> ScheduleRecord:
    """Record a schedule; its first run is the first slot after ``now``."""
    if spec.source.kind in CODE_SOURCE_KINDS and not allow_code_sources:
        raise PermissionDeniedError(
            f"{spec.source.kind} sources run on the scheduler's host; this key may not use them",
            param="source.kind")
    if spec.source.kind == "path":
        render_path(spec.source.path, local_time(0, parse_timezone(spec.timezone)))
    now_ts = resolve_now(now)
    schedule_id = f"sched_{uuid.uuid4().hex[:24]}"
    values = spec.model_dump(exclude={"webhook_secret", "source", "name"})
    secret = spec.webhook_secret.get_secret_value() if spec.webhook_secret else None
    first = next_fire_time(spec.cron, parse_timezone(spec.timezone), after=now_ts)
    with svc.sessions.begin() as session:
        record = repo.insert_schedule(
            session, **values, id=schedule_id, owner_key_id=owner,
            name=spec.name or schedule_id, source=spec.source.model_dump(),
            webhook_secret=secret, next_fire_at=first, created_at=int(now_ts),
            updated_at=now_ts)
    logger.info("schedule.created", extra={"schedule_id": schedule_id, "owner": owner})
    return record


def get_schedule(svc: Services, schedule_id: str, *, owner: str | None) -> ScheduleRecord:
    """One schedule; NotFoundError when it does not exist or is not the caller's."""
    with svc.sessions() as session:
        record = repo.get_schedule(session, schedule_id, owner=owner)
    if record is None:
        raise NotFoundError(f"No such schedule: {schedule_id}", param="schedule_id")
    return record


def list_schedules(svc: Services, *, owner: str | None) -> list[ScheduleRecord]:
    """Every schedule the caller may see, oldest first."""
    with svc.sessions() as session:
        return repo.list_schedules(session, owner=owner)


def pause_schedule(svc: Services, schedule_id: str, *, owner: str | None,
                   now: Clock = None) -> ScheduleRecord:
    """Stop firing (runs already started carry on)."""
    get_schedule(svc, schedule_id, owner=owner)
    with svc.sessions.begin() as session:
        repo.update_schedule(session, schedule_id, enabled=False, updated_at=resolve_now(now))
    return get_schedule(svc, schedule_id, owner=owner)


def resume_schedule(svc: Services, schedule_id: str, *, owner: str | None,
                    now: Clock = None) -> ScheduleRecord:
    """Fire again from the next slot after ``now`` (slots missed while paused are not run)."""
    record = get_schedule(svc, schedule_id, owner=owner)
    now_ts = resolve_now(now)
    cursor = next_fire_time(record.cron, parse_timezone(record.timezone), after=now_ts)
    with svc.sessions.begin() as session:
        repo.update_schedule(session, schedule_id, enabled=True, next_fire_at=cursor,
                             updated_at=now_ts)
    return get_schedule(svc, schedule_id, owner=owner)


def delete_schedule(svc: Services, schedule_id: str, *, owner: str | None) -> ScheduleRecord:
    """Remove a schedule and its run history; batches it created are untouched."""
    record = get_schedule(svc, schedule_id, owner=owner)
    with svc.sessions.begin() as session:
        repo.delete_schedule(session, schedule_id)
    logger.info("schedule.deleted", extra={"schedule_id": schedule_id})
    return record


def list_runs(svc: Services, schedule_id: str, *, owner: str | None,
              limit: int = 50) -> list[ScheduleRunRecord]:
    """A schedule's runs, newest first."""
    get_schedule(svc, schedule_id, owner=owner)
    with svc.sessions() as session:
        return repo.list_runs(session, schedule_id, limit=max(1, min(limit, 1000)))


@dataclass
class TickReport:
    """What one scheduler tick did."""

    runs: list[ScheduleRunRecord] = field(default_factory=list)
    #: Slots another scheduler had already claimed.
    lost_races: int = 0
    #: Batches of earlier runs seen ending during this tick.
    ended: int = 0
    #: Ended batches with a metadata webhook announced by the sweep.
    announced: int = 0
    #: Runs left "started" by a scheduler that died, now settled.
    recovered: int = 0


def tick(svc: Services, *, now: Clock = None) -> TickReport:
    """Fire every due schedule once, note which runs' batches ended, announce ended batches."""
    now_ts = resolve_now(now)
    report = TickReport()
    with svc.sessions() as session:
        due = repo.due_schedules(session, now_ts)
    for schedule in due:
        try:
            _tick_one(svc, schedule, now_ts, report)
        except Exception:  # one broken schedule must not stop the others
            logger.exception("schedule.tick.failed", extra={"schedule_id": schedule.id})
    report.recovered = schedule_runs.recover_interrupted_runs(svc, now=now_ts)
    report.ended = schedule_runs.observe_run_batches(svc, now=now_ts)
    report.announced = notifications.sweep_ended_batches(svc)
    return report


def _tick_one(svc: Services, schedule: ScheduleRecord, now_ts: float, report: TickReport) -> None:
    assert schedule.next_fire_at is not None  # due_schedules only returns set cursors
    plan = plan_tick(schedule.cron, parse_timezone(schedule.timezone),
                     next_fire_at=schedule.next_fire_at, now=now_ts, catch_up=schedule.catch_up,
                     grace_seconds=svc.settings.schedules.misfire_grace_seconds)
    if plan.fire_time is not None:
        run = fire_slot(svc, schedule, plan.fire_time, missed=plan.missed, now=now_ts)
    elif plan.skip_time is not None:
        run = _record_missed(svc, schedule, plan.skip_time, plan.missed, now_ts)
    else:
        return
    if run is None:
        report.lost_races += 1
    else:
        report.runs.append(run)
    with svc.sessions.begin() as session:
        repo.advance_cursor(session, schedule.id, to=plan.next_fire_at, now=now_ts)


def _claim(svc: Services, schedule_id: str, fire_time: int, *, missed: int, now: float,
           status: str = "started", reason: str | None = None) -> int | None:
    """Insert the run row in its own transaction; None when another scheduler got there first."""
    try:
        with svc.sessions.begin() as session:
            return repo.insert_run(session, schedule_id=schedule_id, fire_time=fire_time,
                                   missed=missed, now=now, status=status, reason=reason)
    except IntegrityError:
        logger.info("schedule.fire.already_claimed",
                    extra={"schedule_id": schedule_id, "fire_time": fire_time})
        return None


def _record_missed(svc: Services, schedule: ScheduleRecord, fire_time: int, missed: int,
                   now: float) -> ScheduleRunRecord | None:
    reason = f"catch-up skip: {missed} slot(s) missed while the scheduler was down"
    run_id = _claim(svc, schedule.id, fire_time, missed=missed, now=now, status="skipped",
                    reason=reason)
    return _load_run(svc, run_id) if run_id is not None else None


def fire_slot(svc: Services, schedule: ScheduleRecord, fire_time: int, *, missed: int = 0,
              now: Clock = None) -> ScheduleRunRecord | None:
    """Run one slot of one schedule, exactly once across schedulers (None: already claimed)."""
    now_ts = resolve_now(now)
    run_id = _claim(svc, schedule.id, fire_time, missed=missed, now=now_ts)
    if run_id is None:
        return None
    reason = _overlap_reason(svc, schedule, fire_time)
    if reason is not None:
        _finish(svc, run_id, status="skipped", now=now_ts, reason=reason)
    else:
        _submit_run(svc, schedule, run_id, fire_time, missed, now_ts)
    with svc.sessions.begin() as session:
        repo.set_last_fire(session, schedule.id, fire_time)
    return _load_run(svc, run_id)


def _overlap_reason(svc: Services, schedule: ScheduleRecord, fire_time: int) -> str | None:
    if schedule.overlap != "skip":
        return None
    with svc.sessions() as session:
        previous = repo.latest_batch_run(session, schedule.id, before=fire_time)
    if previous is None or previous.batch_id is None:
        return None
    status = previous.batch_status or schedule_runs.batch_status(svc, previous.batch_id)
    return overlap_skip_reason(schedule.overlap, status, previous.batch_id)


def _submit_run(svc: Services, schedule: ScheduleRecord, run_id: int, fire_time: int,
                missed: int, now_ts: float) -> None:
    try:
        outcome = schedule_runs.submit(svc, schedule, fire_time)
    except Exception as exc:
        logger.warning("schedule.run.failed", extra={"schedule_id": schedule.id,
                                                     "run_id": run_id, "error": type(exc).__name__})
        # A refusal of the create (budget, capacity, a bad input) says what it was; anything
        # else is the source's failure, kept with its last frames.
        code = exc.code if isinstance(exc, BatchyardError) else None
        _finish(svc, run_id, status="failed", now=now_ts,
                reason=f"refused ({code}): {exc}"[:500] if code else "source failed",
                error=short_traceback(exc))
        return
    if outcome.batch_id is None:
        _finish(svc, run_id, status="skipped", now=now_ts, reason=outcome.reason)
        return
    note = f"catch-up: one run for {missed + 1} slots" if missed else None
    _finish(svc, run_id, status="submitted", now=now_ts, reason=note,
            batch_id=outcome.batch_id, file_id=outcome.file_id)
    logger.info("schedule.run.submitted", extra={"schedule_id": schedule.id, "run_id": run_id,
                                                 "batch_id": outcome.batch_id})


def _finish(svc: Services, run_id: int, *, status: str, now: float, **values: Any) -> None:
    with svc.sessions.begin() as session:
        repo.finish_run(session, run_id, status=status, now=now, **values)


def _load_run(svc: Services, run_id: int) -> ScheduleRunRecord:
    with svc.sessions() as session:
        run = repo.get_run(session, run_id)
    if run is None:  # pragma: no cover - the row was inserted by this process
        raise NotFoundError(f"schedule run {run_id} vanished")
    return run


def short_traceback(exc: BaseException, *, max_chars: int = 2000) -> str:
    """The last frames and the message of ``exc``, trimmed for a run record."""
    text = "".join(traceback.format_exception(exc, limit=-4))
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


"""Tables and repository functions for schedules, schedule runs and webhook deliveries.

The exactly-once rule lives in the schema: ``schedule_runs`` is UNIQUE on
``(schedule_id, fire_time)``, so of two schedulers firing the same slot one INSERT fails.
Repository functions take a Session; services own the transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from batchyard.db.models import Base, BatchRow
from batchyard.domain.schedule import TERMINAL_BATCH_STATUSES
from batchyard.domain.schedule_records import (
    ScheduleRecord,
    ScheduleRunRecord,
    WebhookDeliveryRecord,
)

_AUTO_ID = BigInteger().with_variant(Integer, "sqlite")


class ScheduleRow(Base):
    """A recurring batch definition and its cursor (the next slot to fire)."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_enabled_next_fire", "enabled", "next_fire_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    completion_window: Mapped[str] = mapped_column(String(10), default="24h")
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    #: Needed in clear to compute HMACs; never returned by the API nor logged.
    webhook_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    overlap: Mapped[str] = mapped_column(String(10), default="skip")
    catch_up: Mapped[str] = mapped_column(String(10), default="once")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_fire_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_fire_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[float] = mapped_column(Float)


class ScheduleRunRow(Base):
    """One (schedule, fire time): the row is the claim, its columns the outcome."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_runs_schedule_fire"),
    )

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"), index=True)
    fire_time: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The source's error with a short traceback (never request bodies).
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    missed: Mapped[int] = mapped_column(Integer, default=0)
    #: The batch's terminal status once the scheduler has seen it end.
    batch_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class WebhookDeliveryRow(Base):
    """One attempt to POST one event; attempt n+1 is a new row, so every try is on record."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "attempt", name="uq_webhook_deliveries_event_attempt"),
        Index("ix_webhook_deliveries_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[str] = mapped_column(String(64), index=True)
    schedule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2000))
    #: The event JSON (ids, counts, usage: no request content, no secret).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


# ---- conversion ---------------------------------------------------------------------------

def to_schedule(row: ScheduleRow) -> ScheduleRecord:
    """Row -> frozen record."""
    secret = SecretStr(row.webhook_secret) if row.webhook_secret else None
    return ScheduleRecord(
        id=row.id, owner=row.owner_key_id, name=row.name, cron=row.cron, timezone=row.timezone,
        source=dict(row.source), endpoint=row.endpoint, model=row.model,
        completion_window=row.completion_window,
        metadata=dict(row.metadata_) if row.metadata_ is not None else None,
        webhook_url=row.webhook_url, webhook_secret=secret, overlap=row.overlap,
        catch_up=row.catch_up, enabled=row.enabled, next_fire_at=row.next_fire_at,
        last_fire_at=row.last_fire_at, created_at=row.created_at, updated_at=row.updated_at)


def to_run(row: ScheduleRunRow) -> ScheduleRunRecord:
    """Row -> frozen record."""
    return ScheduleRunRecord(
        id=row.id, schedule_id=row.schedule_id, fire_time=row.fire_time, status=row.status,
        batch_id=row.batch_id, file_id=row.file_id, reason=row.reason, error=row.error,
        missed=row.missed, batch_status=row.batch_status, created_at=row.created_at,
        finished_at=row.finished_at)


def to_delivery(row: WebhookDeliveryRow) -> WebhookDeliveryRecord:
    """Row -> frozen record."""
    return WebhookDeliveryRecord(
        id=row.id, event_id=row.event_id, attempt=row.attempt, batch_id=row.batch_id,
        schedule_id=row.schedule_id, event_type=row.event_type, url=row.url,
        payload=row.payload, status=row.status, response_status=row.response_status,
        error=row.error, due_at=row.due_at, created_at=row.created_at,
        finished_at=row.finished_at)


# ---- schedules ----------------------------------------------------------------------------

def insert_schedule(session: Session, **values: Any) -> ScheduleRecord:
    """Add a schedule (``metadata`` maps to the ``metadata`` column)."""
    if "metadata" in values:
        values["metadata_"] = values.pop("metadata")
    row = ScheduleRow(**values)
    session.add(row)
    session.flush()
    return to_schedule(row)


def _visible(owner: str | None) -> Any:
    return True if owner is None else ScheduleRow.owner_key_id == owner


def get_schedule(session: Session, schedule_id: str, *,
                 owner: str | None = None) -> ScheduleRecord | None:
    """The schedule if ``owner`` may see it (None: the master key sees all)."""
    row = session.scalars(select(ScheduleRow).where(
        ScheduleRow.id == schedule_id, _visible(owner))).first()
    return to_schedule(row) if row is not None else None


def list_schedules(session: Session, *, owner: str | None = None) -> list[ScheduleRecord]:
    """Schedules visible to ``owner``, oldest first."""
    rows = session.scalars(select(ScheduleRow).where(_visible(owner))
                           .order_by(ScheduleRow.created_at, ScheduleRow.id))
    return [to_schedule(r) for r in rows]


def update_schedule(session: Session, schedule_id: str, **values: Any) -> bool:
    """Set columns on a schedule; False when it does not exist."""
    result = session.execute(update(ScheduleRow).where(ScheduleRow.id == schedule_id)
                             .values(**values))
    return bool(getattr(result, "rowcount", 0))


def delete_schedule(session: Session, schedule_id: str) -> None:
    """Remove a schedule and its run history (deliveries stay: they belong to batches)."""
    session.execute(delete(ScheduleRunRow).where(ScheduleRunRow.schedule_id == schedule_id))
    session.execute(delete(ScheduleRow).where(ScheduleRow.id == schedule_id))


def due_schedules(session: Session, now: float) -> list[ScheduleRecord]:
    """Enabled schedules whose cursor is at or before ``now``."""
    rows = session.scalars(select(ScheduleRow).where(
        ScheduleRow.enabled.is_(True), ScheduleRow.next_fire_at <= now)
        .order_by(ScheduleRow.next_fire_at))
    return [to_schedule(r) for r in rows]


def advance_cursor(session: Session, schedule_id: str, *, to: int, now: float) -> bool:
    """Move the cursor forward only (two schedulers never move it back)."""
    result = session.execute(update(ScheduleRow).where(
        ScheduleRow.id == schedule_id, ScheduleRow.enabled.is_(True),
        ScheduleRow.next_fire_at < to).values(next_fire_at=to, updated_at=now))
    return bool(getattr(result, "rowcount", 0))


# ---- runs ---------------------------------------------------------------------------------

def insert_run(session: Session, *, schedule_id: str, fire_time: int, missed: int,
               now: float, status: str = "started", reason: str | None = None) -> int:
    """Claim (schedule, fire time). Raises IntegrityError at flush when already claimed."""
    row = ScheduleRunRow(schedule_id=schedule_id, fire_time=fire_time, status=status,
                         missed=missed, reason=reason, created_at=now,
                         finished_at=now if status != "started" else None)
    session.add(row)
    session.flush()
    return row.id


def finish_run(session: Session, run_id: int, *, status: str, now: float,
               **values: Any) -> None:
    """Record a run's outcome (batch_id, file_id, reason, error)."""
    session.execute(update(ScheduleRunRow).where(ScheduleRunRow.id == run_id)
                    .values(status=status, finished_at=now, **values))


def set_last_fire(session: Session, schedule_id: str, fire_time: int) -> None:
    """Remember the latest slot that produced a run."""
    session.execute(update(ScheduleRow).where(
        ScheduleRow.id == schedule_id,
        or_(ScheduleRow.last_fire_at.is_(None), ScheduleRow.last_fire_at < fire_time))
        .values(last_fire_at=fire_time))


def get_run(session: Session, run_id: int) -> ScheduleRunRecord | None:
    """One run by id."""
    row = session.get(ScheduleRunRow, run_id)
    return to_run(row) if row is not None else None


def list_runs(session: Session, schedule_id: str, *, limit: int = 50) -> list[ScheduleRunRecord]:
    """A schedule's runs, newest fire time first."""
    rows = session.scalars(select(ScheduleRunRow)
                           .where(ScheduleRunRow.schedule_id == schedule_id)
                           .order_by(ScheduleRunRow.fire_time.desc()).limit(limit))
    return [to_run(r) for r in rows]


def latest_batch_run(session: Session, schedule_id: str, *,
                     before: int) -> ScheduleRunRecord | None:
    """The newest run before ``before`` that created a batch (for the overlap policy)."""
    row = session.scalars(select(ScheduleRunRow).where(
        ScheduleRunRow.schedule_id == schedule_id, ScheduleRunRow.batch_id.is_not(None),
        ScheduleRunRow.fire_time < before)
        .order_by(ScheduleRunRow.fire_time.desc()).limit(1)).first()
    return to_run(row) if row is not None else None


def runs_awaiting_batch_end(session: Session, *, limit: int = 200) -> list[ScheduleRunRecord]:
    """Submitted runs whose batch has not been seen ending yet."""
    rows = session.scalars(select(ScheduleRunRow).where(
        ScheduleRunRow.status == "submitted", ScheduleRunRow.batch_status.is_(None))
        .order_by(ScheduleRunRow.id).limit(limit))
    return [to_run(r) for r in rows]


def set_run_batch_status(session: Session, run_id: int, status: str) -> None:
    """Note the terminal status of a run's batch."""
    session.execute(update(ScheduleRunRow).where(ScheduleRunRow.id == run_id)
                    .values(batch_status=status))


def schedule_for_batch(session: Session, batch_id: str) -> ScheduleRecord | None:
    """The schedule whose run created ``batch_id``, if any."""
    row = session.scalars(select(ScheduleRow).join(
        ScheduleRunRow, ScheduleRunRow.schedule_id == ScheduleRow.id)
        .where(ScheduleRunRow.batch_id == batch_id).limit(1)).first()
    return to_schedule(row) if row is not None else None


# ---- webhook deliveries -------------------------------------------------------------------

def insert_delivery(session: Session, **values: Any) -> int:
    """Add a delivery attempt row. IntegrityError at flush when (event, attempt) exists."""
    row = WebhookDeliveryRow(**values)
    session.add(row)
    session.flush()
    return row.id


def claim_delivery(session: Session, delivery_id: int, *, now: float,
                   stale_before: float) -> WebhookDeliveryRecord | None:
    """Take a due attempt for sending (compare-and-set); a 'sending' row is stale after a crash."""
    result = session.execute(update(WebhookDeliveryRow).where(
        WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.due_at <= now,
        or_(WebhookDeliveryRow.status == "pending",
            (WebhookDeliveryRow.status == "sending") & (WebhookDeliveryRow.due_at < stale_before)))
        .values(status="sending", due_at=now))
    if not getattr(result, "rowcount", 0):
        return None
    row = session.get(WebhookDeliveryRow, delivery_id, populate_existing=True)
    return to_delivery(row) if row is not None else None


def finish_delivery(session: Session, delivery_id: int, *, status: str, now: float,
                    response_status: int | None, error: str | None) -> None:
    """Record one attempt's outcome."""
    session.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id)
                    .values(status=status, finished_at=now, response_status=response_status,
                            error=error))


def due_deliveries(session: Session, *, now: float, stale_before: float,
                   limit: int = 100) -> list[int]:
    """Ids of attempts that should be sent now (pending and due, or stuck sending)."""
    return list(session.scalars(select(WebhookDeliveryRow.id).where(
        or_((WebhookDeliveryRow.status == "pending") & (WebhookDeliveryRow.due_at <= now),
            (WebhookDeliveryRow.status == "sending")
            & (WebhookDeliveryRow.due_at < stale_before)))
        .order_by(WebhookDeliveryRow.due_at).limit(limit)))


def list_deliveries(session: Session, *, event_id: str | None = None,
                    batch_id: str | None = None) -> list[WebhookDeliveryRecord]:
    """Delivery attempts for an event or a batch, in order."""
    query = select(WebhookDeliveryRow)
    if event_id is not None:
        query = query.where(WebhookDeliveryRow.event_id == event_id)
    if batch_id is not None:
        query = query.where(WebhookDeliveryRow.batch_id == batch_id)
    rows = session.scalars(query.order_by(WebhookDeliveryRow.id))
    return [to_delivery(r) for r in rows]


def events_with_deliveries(session: Session, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` already have a first attempt on record."""
    if not event_ids:
        return set()
    return set(session.scalars(select(WebhookDeliveryRow.event_id).where(
        WebhookDeliveryRow.event_id.in_(list(event_ids)), WebhookDeliveryRow.attempt == 1)))


def ended_batches_since(session: Session, *, since: float,
                        limit: int = 1000) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(id, status, metadata) of batches that reached a terminal status at or after ``since``.

    Read-only over the pipeline's table: the webhook sweep needs no hook in the pipeline.
    """
    rows = session.execute(select(BatchRow.id, BatchRow.status, BatchRow.metadata_).where(
        BatchRow.status.in_(sorted(TERMINAL_BATCH_STATUSES)), BatchRow.updated_at >= since)
        .order_by(BatchRow.updated_at).limit(limit))
    return [(r[0], r[1], r[2]) for r in rows]


def stale_started_runs(session: Session, *, before: float,
                       limit: int = 100) -> list[ScheduleRunRecord]:
    """Runs claimed before ``before`` that never recorded an outcome (their scheduler died)."""
    rows = session.scalars(select(ScheduleRunRow).where(
        ScheduleRunRow.status == "started", ScheduleRunRow.created_at < before)
        .order_by(ScheduleRunRow.id).limit(limit))
    return [to_run(r) for r in rows]


def batch_created_for_run(session: Session, schedule_id: str, *, fire_time_iso: str,
                          since: float) -> str | None:
    """The batch a run created, found by the metadata the run put on it (after a crash)."""
    rows = session.execute(select(BatchRow.id, BatchRow.metadata_).where(
        BatchRow.created_at >= int(since)))
    for batch_id, metadata in rows:
        meta = metadata or {}
        if (meta.get("batchyard_schedule_id") == schedule_id
                and meta.get("batchyard_fire_time") == fire_time_iso):
            return str(batch_id)
    return None

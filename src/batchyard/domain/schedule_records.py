"""Frozen records for schedules, their runs and webhook delivery attempts (rows -> these in db/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

#: Run outcomes: claimed (started), a batch was created (submitted), skipped, or failed.
RUN_STATUSES: tuple[str, ...] = ("started", "submitted", "skipped", "failed")
#: Delivery attempt outcomes.
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "sending", "delivered", "failed")


@dataclass(frozen=True)
class ScheduleRecord:
    """A recurring batch: when (cron + zone), from what (source) and how (batch settings)."""

    id: str
    owner: str | None
    name: str
    cron: str
    timezone: str
    #: {"kind": "file", "file_id"} | {"kind": "callable", "target"} | {"kind": "path", "path"}
    source: dict[str, Any]
    endpoint: str
    model: str | None
    completion_window: str
    metadata: dict[str, str] | None
    webhook_url: str | None
    webhook_secret: SecretStr | None = field(repr=False)
    overlap: str
    catch_up: str
    enabled: bool
    next_fire_at: int | None
    last_fire_at: int | None
    created_at: int
    updated_at: float


@dataclass(frozen=True)
class ScheduleRunRecord:
    """One fire time of one schedule and what came of it."""

    id: int
    schedule_id: str
    fire_time: int
    status: str
    batch_id: str | None
    file_id: str | None
    reason: str | None
    error: str | None
    missed: int
    batch_status: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class WebhookDeliveryRecord:
    """One attempt to deliver one event to one URL."""

    id: int
    event_id: str
    attempt: int
    batch_id: str
    schedule_id: str | None
    event_type: str
    url: str
    payload: str
    status: str
    response_status: int | None
    error: str | None
    due_at: float
    created_at: float
    finished_at: float | None

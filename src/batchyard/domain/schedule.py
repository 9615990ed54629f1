"""Schedules as pure maths: cron fire times in a time zone, catch-up after downtime, overlap.

Times cross this module as unix seconds (ints: cron slots are whole seconds) so the database
can key runs on ``(schedule_id, fire_time)`` exactly. Time zones are IANA names resolved with
:mod:`zoneinfo`; cron arithmetic is done by ``croniter`` on time-zone-aware datetimes, so a
``0 2 * * *`` schedule in ``Europe/Paris`` fires at 02:00 Paris time all year round.

DST rules (the classic cron behaviour): a wall-clock time that does not exist (spring forward)
fires at the first instant after the gap; a wall-clock time that happens twice (fall back)
fires once, on its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from batchyard.domain import lifecycle
from batchyard.errors import InvalidInputError

CatchUp = Literal["once", "skip"]
Overlap = Literal["skip", "allow"]
CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)
OVERLAP_POLICIES: tuple[str, ...] = get_args(Overlap)

#: Public batch statuses after which a batch never changes again.
TERMINAL_BATCH_STATUSES = lifecycle.TERMINAL_BATCH_STATUSES

#: Counting missed slots stops here (a per-minute cron down for a month has ~43,000).
MAX_COUNTED_SLOTS = 1_000


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name``; :class:`InvalidInputError` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(f"unknown time zone {name!r}", param="timezone") from exc


def validate_cron(expr: str) -> str:
    """``expr`` stripped, if it is a valid 5-field (or 6-field, with seconds) cron expression."""
    text = " ".join(expr.split())
    if len(text.split(" ")) not in (5, 6) or not croniter.is_valid(text):
        raise InvalidInputError(f"invalid cron expression {expr!r}", param="cron")
    return text


def _is_repeated_wall_time(moment: datetime, tz: ZoneInfo) -> bool:
    # Re-derive the local time from UTC: fold=1 marks the second pass through a fall-back hour.
    return moment.astimezone(UTC).astimezone(tz).fold == 1


def iter_fire_times(cron: str, tz: ZoneInfo, *, after: float) -> Iterator[int]:
    """Fire times strictly after ``after`` (unix seconds), forever, in order."""
    start = datetime.fromtimestamp(after, UTC).astimezone(tz)
    it = croniter(cron, start)
    while True:
        moment: datetime = it.get_next(datetime)
        if not _is_repeated_wall_time(moment, tz):
            yield int(moment.timestamp())


def next_fire_time(cron: str, tz: ZoneInfo, *, after: float) -> int:
    """The first fire time strictly after ``after``."""
    return next(iter_fire_times(cron, tz, after=after))


def latest_fire_time(cron: str, tz: ZoneInfo, *, at_or_before: float) -> int:
    """The last fire time at or before ``at_or_before``."""
    # Start one second later so a slot exactly at ``at_or_before`` counts (slots are whole
    # seconds and croniter's get_prev is strict).
    start = datetime.fromtimestamp(int(at_or_before) + 1, UTC).astimezone(tz)
    it = croniter(cron, start)
    while True:
        moment: datetime = it.get_prev(datetime)
        if not _is_repeated_wall_time(moment, tz):
            return int(moment.timestamp())


@dataclass(frozen=True)
class TickPlan:
    """What one scheduler tick should do for one schedule.

    ``fire_time`` is the slot to run (None: run nothing); ``skip_time`` is a slot to record as
    skipped instead (catch-up ``skip`` after downtime); ``missed`` counts the slots that get no
    run of their own; ``next_fire_at`` is where the schedule's cursor moves to.
    """

    fire_time: int | None
    skip_time: int | None
    missed: int
    next_fire_at: int

    @property
    def is_idle(self) -> bool:
        """True when nothing is due."""
        return self.fire_time is None and self.skip_time is None


def plan_tick(cron: str, tz: ZoneInfo, *, next_fire_at: int, now: float, catch_up: str,
              grace_seconds: float) -> TickPlan:
    """Decide what is due at ``now`` for a schedule whose cursor is ``next_fire_at``.

    A slot is *on time* when ``now`` is within ``grace_seconds`` of it; older due slots were
    missed (the scheduler was down). ``once`` runs one batch, at the latest due slot, for
    everything missed; ``skip`` runs only an on-time slot and records the missed ones as one
    skipped run.
    """
    if now < next_fire_at:
        return TickPlan(None, None, 0, next_fire_at)
    latest = max(next_fire_at, latest_fire_time(cron, tz, at_or_before=now))
    earlier = count_fire_times(cron, tz, start=next_fire_at, before=latest)
    cursor = next_fire_time(cron, tz, after=latest)
    on_time = now - latest <= grace_seconds
    if catch_up == "once" or on_time:
        return TickPlan(latest, None, earlier, cursor)
    return TickPlan(None, latest, earlier + 1, cursor)


def count_fire_times(cron: str, tz: ZoneInfo, *, start: int, before: int) -> int:
    """How many slots lie in ``[start, before)`` (``start`` being a slot), capped."""
    if start >= before:
        return 0
    count = 1
    for moment in iter_fire_times(cron, tz, after=start):
        if moment >= before or count >= MAX_COUNTED_SLOTS:
            break
        count += 1
    return count


def overlap_skip_reason(policy: str, previous_status: str | None,
                        previous_batch_id: str | None = None) -> str | None:
    """Why a run must be skipped under the overlap policy, or None to go ahead."""
    if policy != "skip" or previous_status is None:
        return None
    if previous_status in TERMINAL_BATCH_STATUSES:
        return None
    which = f" {previous_batch_id}" if previous_batch_id else ""
    return f"overlap: previous batch{which} is still {previous_status}"


def local_time(fire_time: float, tz: ZoneInfo) -> datetime:
    """A fire time as an aware datetime in the schedule's zone."""
    return datetime.fromtimestamp(fire_time, UTC).astimezone(tz)


def path_placeholders(fire_local: datetime, schedule_id: str = "") -> dict[str, object]:
    """The values a JSONL path template may name (see docs/schedules.md)."""
    today: date = fire_local.date()
    return {
        "date": today,
        "yesterday": today - timedelta(days=1),
        "tomorrow": today + timedelta(days=1),
        "fire_time": fire_local,
        "fire_time_utc": fire_local.astimezone(UTC),
        "timestamp": int(fire_local.timestamp()),
        "schedule_id": schedule_id,
    }


def render_path(template: str, fire_local: datetime, schedule_id: str = "") -> str:
    """Fill ``{date}``-style placeholders, then strftime codes (``%Y``) from the fire time.

    Placeholders are dates/datetimes, so format specs work too: ``{yesterday:%Y/%m/%d}``.
    """
    try:
        filled = template.format_map(path_placeholders(fire_local, schedule_id))
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInputError(f"bad path template {template!r}: {exc}",
                                param="source.path") from exc
    return fire_local.strftime(filled)

"""Cron fire times with time zones, catch-up maths, overlap, path templates, webhook signing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchyard.domain import schedule as sch
from batchyard.domain import webhooks as wh
from batchyard.errors import InvalidInputError

PARIS = sch.parse_timezone("Europe/Paris")
UTC_TZ = sch.parse_timezone("UTC")


def ts(*args: int) -> int:
    """Unix seconds of a UTC wall-clock time."""
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_next_fire_time_follows_the_zone_not_utc() -> None:
    after = ts(2026, 1, 10, 12, 0)
    fire = sch.next_fire_time("0 2 * * *", PARIS, after=after)
    assert sch.local_time(fire, PARIS).hour == 2
    assert fire == ts(2026, 1, 11, 1, 0)  # 02:00 CET is 01:00 UTC in winter


def test_next_fire_time_is_strictly_after() -> None:
    slot = ts(2026, 1, 10, 2, 0)
    assert sch.next_fire_time("0 2 * * *", UTC_TZ, after=slot) == ts(2026, 1, 11, 2, 0)


def test_summer_time_shifts_the_utc_instant() -> None:
    fire = sch.next_fire_time("0 2 * * *", PARIS, after=ts(2026, 7, 1, 12, 0))
    assert fire == ts(2026, 7, 2, 0, 0)  # 02:00 CEST is 00:00 UTC


def test_a_repeated_wall_clock_time_fires_once_on_fall_back() -> None:
    start = ts(2026, 10, 24, 12, 0)
    fires = []
    for fire in sch.iter_fire_times("30 2 * * *", PARIS, after=start):
        fires.append(fire)
        if len(fires) == 3:
            break
    days = [sch.local_time(f, PARIS).date().day for f in fires]
    assert days == [25, 26, 27]


def test_a_missing_wall_clock_time_fires_after_the_gap() -> None:
    fire = sch.next_fire_time("30 2 * * *", PARIS, after=ts(2026, 3, 28, 12, 0))
    local = sch.local_time(fire, PARIS)
    assert (local.day, local.hour) == (29, 3)


def test_latest_fire_time_includes_an_exact_slot() -> None:
    slot = ts(2026, 1, 10, 2, 0)
    assert sch.latest_fire_time("0 2 * * *", UTC_TZ, at_or_before=slot) == slot
    assert sch.latest_fire_time("0 2 * * *", UTC_TZ, at_or_before=slot - 1) == slot - 86400


@pytest.mark.parametrize("expr", ["", "bad", "61 * * * *", "* * *", "0 0 2 * * * * *"])
def test_invalid_cron_is_rejected(expr: str) -> None:
    with pytest.raises(InvalidInputError):
        sch.validate_cron(expr)


def test_cron_is_normalised_and_unknown_zone_rejected() -> None:
    assert sch.validate_cron("  0  2 * *   * ") == "0 2 * * *"
    with pytest.raises(InvalidInputError):
        sch.parse_timezone("Mars/Olympus")


HOURLY = "0 * * * *"


def test_plan_is_idle_before_the_cursor() -> None:
    cursor = ts(2026, 1, 10, 3, 0)
    plan = sch.plan_tick(HOURLY, UTC_TZ, next_fire_at=cursor, now=cursor - 1,
                         catch_up="once", grace_seconds=60)
    assert plan.is_idle and plan.next_fire_at == cursor


def test_plan_fires_an_on_time_slot_and_advances() -> None:
    cursor = ts(2026, 1, 10, 3, 0)
    for policy in sch.CATCH_UP_POLICIES:
        plan = sch.plan_tick(HOURLY, UTC_TZ, next_fire_at=cursor, now=cursor + 5,
                             catch_up=policy, grace_seconds=60)
        assert (plan.fire_time, plan.skip_time, plan.missed) == (cursor, None, 0)
        assert plan.next_fire_at == cursor + 3600


def test_catch_up_once_runs_one_batch_for_everything_missed() -> None:
    cursor = ts(2026, 1, 10, 3, 0)
    now = cursor + 5 * 3600 + 1800  # down from 03:00 to 08:30: slots 03..08 are due
    plan = sch.plan_tick(HOURLY, UTC_TZ, next_fire_at=cursor, now=now,
                         catch_up="once", grace_seconds=60)
    assert plan.fire_time == cursor + 5 * 3600
    assert plan.missed == 5
    assert plan.next_fire_at == cursor + 6 * 3600


def test_catch_up_skip_runs_nothing_for_missed_slots() -> None:
    cursor = ts(2026, 1, 10, 3, 0)
    now = cursor + 5 * 3600 + 1800
    plan = sch.plan_tick(HOURLY, UTC_TZ, next_fire_at=cursor, now=now,
                         catch_up="skip", grace_seconds=60)
    assert plan.fire_time is None
    assert plan.skip_time == cursor + 5 * 3600
    assert plan.missed == 6
    assert plan.next_fire_at == cursor + 6 * 3600


def test_catch_up_skip_still_runs_a_slot_that_is_on_time() -> None:
    cursor = ts(2026, 1, 10, 3, 0)
    now = cursor + 2 * 3600 + 10  # 05:00:10: 03 and 04 missed, 05 on time
    plan = sch.plan_tick(HOURLY, UTC_TZ, next_fire_at=cursor, now=now,
                         catch_up="skip", grace_seconds=60)
    assert (plan.fire_time, plan.skip_time, plan.missed) == (cursor + 7200, None, 2)


def test_missed_slot_count_is_capped() -> None:
    start = ts(2026, 1, 1, 0, 0)
    count = sch.count_fire_times("* * * * *", UTC_TZ, start=start, before=start + 86400 * 30)
    assert count == sch.MAX_COUNTED_SLOTS


@pytest.mark.parametrize(("policy", "status", "skipped"), [
    ("skip", "in_progress", True), ("skip", "validating", True), ("skip", "finalizing", True),
    ("skip", "completed", False), ("skip", "failed", False), ("skip", None, False),
    ("allow", "in_progress", False),
])
def test_overlap_policy(policy: str, status: str | None, skipped: bool) -> None:
    reason = sch.overlap_skip_reason(policy, status, "batch_1")
    assert (reason is not None) is skipped
    if reason:
        assert "batch_1" in reason and str(status) in reason


def test_path_template_placeholders_and_strftime() -> None:
    fire = sch.local_time(ts(2026, 3, 1, 23, 30), PARIS)  # 00:30 on 2 March in Paris
    path = sch.render_path("/data/{yesterday}/in-{date:%Y%m%d}-%H.jsonl", fire, "sch_1")
    assert path == "/data/2026-03-01/in-20260302-00.jsonl"
    assert sch.render_path("{schedule_id}-{tomorrow}", fire, "sch_1") == "sch_1-2026-03-03"


def test_path_template_with_unknown_placeholder_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        sch.render_path("/data/{nope}.jsonl", sch.local_time(0, UTC_TZ))


def test_signature_round_trip_and_tamper_detection() -> None:
    event = wh.build_event(batch_id="batch_1", status="completed",
                           request_counts={"total": 2, "completed": 2, "failed": 0},
                           usage={"input_tokens": 3}, created_at=100)
    body = wh.encode_event(event)
    header = wh.signature_header("s3cret", 1000, body)
    assert wh.verify_signature("s3cret", header, body, now=1000)
    assert not wh.verify_signature("other", header, body, now=1000)
    assert not wh.verify_signature("s3cret", header, body + b" ", now=1000)
    assert not wh.verify_signature("s3cret", header, body, now=1000 + 301)
    assert not wh.verify_signature("s3cret", "garbage", body, now=1000)


def test_event_shape_and_stable_id() -> None:
    event = wh.build_event(batch_id="batch_1", status="expired",
                           request_counts={"total": 1, "completed": 0, "failed": 1},
                           usage=None, created_at=5)
    assert event["type"] == "batch.expired"
    assert event["data"]["status"] == "expired" and event["data"]["id"] == "batch_1"
    assert event["id"] == wh.event_id_for("batch_1", "expired")
    assert event["id"] != wh.event_id_for("batch_1", "completed")
    with pytest.raises(ValueError):
        wh.build_event(batch_id="b", status="in_progress", request_counts={}, usage=None,
                       created_at=0)


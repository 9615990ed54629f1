"""Scheduled runs on PostgreSQL: exactly once across schedulers, overlap, catch-up, sources.

No worker runs here: a created batch stays ``validating`` (an active batch, which is what the
overlap policy needs). Where a test needs a batch to have ended, it plays the pipeline's part
with one UPDATE of the batch row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.services import files, notifications, schedules
from batchyard.services.container import Services, build_services
from batchyard.services.schedule_sources import SourceContext
from batchyard.services.schedules import ScheduleSpec
from tests.e2e.helpers import Nudges
from tests.integration.test_schedules_fixtures import (
    Clock,
    Receiver,
    clean_schedule_tables,
    sched_db_url,
    schedule_settings,
)

__all__ = ["sched_db_url"]

pytestmark = pytest.mark.postgres
HOURLY = "0 * * * *"
T0 = datetime(2026, 1, 10, 2, 30, tzinfo=UTC).timestamp()  # half past a slot
HERE = "tests.integration.test_schedules"


# ---- sources used by dotted path ----------------------------------------------------------

def nightly_requests(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """Yields three chat requests about the fire date."""
    for i in range(3):
        yield {"custom_id": f"r{i}", "body": {"messages": [
            {"role": "user", "content": f"summarise {ctx.date.isoformat()} part {i}"}]}}


def broken_source(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """Yields one request, then fails the way a user's data source fails."""
    yield {"body": {"messages": [{"role": "user", "content": "hi"}]}}
    raise RuntimeError("the warehouse is down")


def no_requests() -> list[dict[str, Any]]:
    """Nothing to do tonight."""
    return []


# ---- fixtures and helpers -----------------------------------------------------------------

@pytest.fixture()
def nudges() -> Nudges:
    return Nudges()


@pytest.fixture()
def svc(sched_db_url: str, tmp_path: Path, nudges: Nudges) -> Iterator[Services]:
    clean_schedule_tables(sched_db_url)
    services = build_services(schedule_settings(sched_db_url, tmp_path, misfire_grace_seconds=60,
                                                webhook_secret="s"), nudge=nudges)
    try:
        yield services
    finally:
        services.close()


def _count(svc: Services, table: str) -> int:
    # file_chunks: on SQLite new chunks are in the store's file of its own (chunk_engine).
    engine = svc.store.chunk_engine if table == "file_chunks" else svc.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _input_file(svc: Services, lines: int = 2) -> str:
    import io

    body = b"".join(
        b'{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}}\n' % i
        for i in range(lines))
    record = files.create_file(svc, owner=None, filename="in.jsonl", purpose="batch",
                               stream=io.BytesIO(body))
    return record.id


def _spec(source: dict[str, Any], **extra: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"cron": HOURLY, "source": source,
                                        "model": "gpt-4o-mini", **extra})


def _end_batch(svc: Services, batch_id: str, status: str = "completed") -> None:
    """Play the pipeline: the batch reaches a terminal status."""
    with svc.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE batches SET status=:s, {status}_at=:t, total=2, "
                             "completed=2 WHERE id=:id"), {"s": status, "t": 1, "id": batch_id})


# ---- exactly once -------------------------------------------------------------------------

def test_two_schedulers_firing_the_same_slot_at_once_make_one_run(sched_db_url: str,
                                                                 tmp_path: Path) -> None:
    clean_schedule_tables(sched_db_url)
    a = build_services(schedule_settings(sched_db_url, tmp_path), nudge=Nudges())
    b = build_services(schedule_settings(sched_db_url, tmp_path), nudge=Nudges())
    try:
        sched = schedules.create_schedule(a, _spec({"kind": "file", "file_id": _input_file(a)}),
                                          owner=None, now=T0)
        assert sched.next_fire_at is not None
        barrier = threading.Barrier(2)
        outcomes: list[Any] = []

        def fire(services: Services) -> None:
            barrier.wait()  # both reach the INSERT together: no pre-check can save us
            outcomes.append(schedules.fire_slot(services, sched, sched.next_fire_at or 0,
                                                now=T0 + 1800))

        threads = [threading.Thread(target=fire, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        runs = schedules.list_runs(a, sched.id, owner=None)
    finally:
        a.close()
        b.close()
    assert sorted(o is None for o in outcomes) == [False, True]
    assert len(runs) == 1 and runs[0].status == "submitted"
    assert _batches_of(sched_db_url, sched.id) == [runs[0].batch_id]


def _batches_of(url: str, schedule_id: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, metadata FROM batches")).all()
    finally:
        engine.dispose()
    return [r.id for r in rows if (r.metadata or {}).get("batchyard_schedule_id") == schedule_id]


def test_concurrent_ticks_over_many_slots_never_double_fire(sched_db_url: str,
                                                           tmp_path: Path) -> None:
    clean_schedule_tables(sched_db_url)
    pool = [build_services(schedule_settings(sched_db_url, tmp_path), nudge=Nudges())
            for _ in range(3)]
    try:
        sched = schedules.create_schedule(
            pool[0], _spec({"kind": "file", "file_id": _input_file(pool[0])}, overlap="allow"),
            owner=None, now=T0)
        for slot in range(4):
            now = T0 + 1800 + slot * 3600 + 5
            barrier = threading.Barrier(len(pool))

            def tick(services: Services, at: float = now, gate: Any = barrier) -> None:
                gate.wait()
                schedules.tick(services, now=at)

            threads = [threading.Thread(target=tick, args=(s,)) for s in pool]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        runs = schedules.list_runs(pool[0], sched.id, owner=None)
    finally:
        for s in pool:
            s.close()
    assert len(runs) == 4
    assert len({r.fire_time for r in runs}) == 4
    assert sorted(_batches_of(sched_db_url, sched.id)) == sorted(r.batch_id for r in runs)


# ---- overlap ------------------------------------------------------------------------------

def test_overlap_skip_waits_for_the_previous_batch_to_end(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                      owner=None, now=clock)
    clock.now = T0 + 1800 + 10
    first = schedules.tick(svc, now=clock).runs
    clock.advance(3600)
    second = schedules.tick(svc, now=clock).runs
    assert [r.status for r in first] == ["submitted"]
    assert [r.status for r in second] == ["skipped"]
    assert second[0].batch_id is None and first[0].batch_id is not None
    assert "overlap" in (second[0].reason or "") and first[0].batch_id in (second[0].reason or "")
    _end_batch(svc, first[0].batch_id)
    clock.advance(3600)
    third = schedules.tick(svc, now=clock).runs
    assert [r.status for r in third] == ["submitted"]
    assert len(_batches_of(str(svc.settings.database_url), sched.id)) == 2


def test_overlap_allow_starts_a_batch_while_the_last_one_runs(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "file", "file_id": _input_file(svc)}, overlap="allow"),
        owner=None, now=clock)
    for _ in range(2):
        clock.now = (sched.next_fire_at or 0) + 10 if clock.now < (sched.next_fire_at or 0) \
            else clock.now + 3600
        schedules.tick(svc, now=clock)
    runs = schedules.list_runs(svc, sched.id, owner=None)
    assert [r.status for r in runs] == ["submitted", "submitted"]
    assert len({r.batch_id for r in runs}) == 2


# ---- catch-up -----------------------------------------------------------------------------

def test_catch_up_once_runs_one_batch_for_all_missed_slots(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)},
                                                 catch_up="once"), owner=None, now=clock)
    first_slot = sched.next_fire_at or 0
    clock.now = first_slot + 5 * 3600 + 1200  # the scheduler was down for five hours
    report = schedules.tick(svc, now=clock)
    assert [(r.status, r.missed, r.fire_time) for r in report.runs] == [
        ("submitted", 5, first_slot + 5 * 3600)]
    assert "6 slots" in (report.runs[0].reason or "")
    assert schedules.tick(svc, now=clock).runs == []  # nothing more until the next slot
    assert schedules.get_schedule(svc, sched.id, owner=None).next_fire_at == \
        first_slot + 6 * 3600


def test_catch_up_skip_runs_nothing_for_missed_slots_then_resumes(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)},
                                                 catch_up="skip"), owner=None, now=clock)
    first_slot = sched.next_fire_at or 0
    clock.now = first_slot + 5 * 3600 + 1200
    missed = schedules.tick(svc, now=clock).runs
    assert [(r.status, r.batch_id, r.missed) for r in missed] == [("skipped", None, 6)]
    assert "catch-up skip" in (missed[0].reason or "")
    assert _batches_of(str(svc.settings.database_url), sched.id) == []
    clock.now = first_slot + 6 * 3600 + 5  # the next slot, on time
    on_time = schedules.tick(svc, now=clock).runs
    assert [(r.status, r.fire_time) for r in on_time] == [("submitted", first_slot + 6 * 3600)]


def test_paused_schedules_do_not_fire_and_resume_from_the_next_slot(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                      owner=None, now=clock)
    schedules.pause_schedule(svc, sched.id, owner=None, now=clock)
    clock.advance(3 * 3600)
    assert schedules.tick(svc, now=clock).runs == []
    resumed = schedules.resume_schedule(svc, sched.id, owner=None, now=clock)
    assert resumed.enabled and (resumed.next_fire_at or 0) > clock.now
    assert schedules.list_runs(svc, sched.id, owner=None) == []


# ---- sources ------------------------------------------------------------------------------

def test_a_callable_source_builds_the_batch_input(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "callable", "target": f"{HERE}:nightly_requests"},
                   timezone="Asia/Tokyo"), owner=None, now=clock)
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "submitted" and run.file_id and run.batch_id
    content = b"".join(files.iter_file_content(svc, run.file_id, owner=None)).decode()
    lines = content.splitlines()
    assert len(lines) == 3
    assert '"custom_id":"r0"' in lines[0] and '"model":"gpt-4o-mini"' in lines[0]
    assert '"url":"/v1/chat/completions"' in lines[0]
    assert "summarise 2026-01-10 part 0" in lines[0]  # 03:00 UTC is noon in Tokyo


def test_a_failing_callable_records_the_error_and_creates_nothing(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "callable", "target": f"{HERE}:broken_source"}), owner=None,
        now=clock)
    before = (_count(svc, "files"), _count(svc, "batches"), _count(svc, "file_chunks"))
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "failed"
    assert run.batch_id is None and run.file_id is None
    assert "RuntimeError: the warehouse is down" in (run.error or "")
    assert "Traceback" in (run.error or "") and "broken_source" in (run.error or "")
    assert (_count(svc, "files"), _count(svc, "batches"), _count(svc, "file_chunks")) == before
    # the failure does not stop the schedule: the next slot is still planned
    assert schedules.get_schedule(svc, sched.id, owner=None).next_fire_at == \
        (sched.next_fire_at or 0) + 3600


def test_a_run_that_would_take_its_key_over_budget_fails_and_creates_nothing(
        svc: Services) -> None:
    from batchyard.services import costs, keys

    key, _ = keys.create_key(svc, name="nightly", can_schedule=True)
    costs.set_key_budget(svc, key.id, max_budget_usd="0.000000001")
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "callable", "target": f"{HERE}:nightly_requests"}), owner=key.id,
        now=clock)
    before = (_count(svc, "files WHERE NOT deleted"), _count(svc, "batches"),
              _count(svc, "file_chunks"))
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "failed" and run.batch_id is None
    assert (run.reason or "").startswith("refused (budget_exceeded): ")
    assert "budget" in (run.error or "")
    # the materialised input is removed again (its row stays, marked deleted)
    assert (_count(svc, "files WHERE NOT deleted"), _count(svc, "batches"),
            _count(svc, "file_chunks")) == before
    # With room in the budget the next slot runs, and its batch carries the estimate.
    costs.set_key_budget(svc, key.id, max_budget_usd="100")
    clock.now = (sched.next_fire_at or 0) + 3601
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "submitted" and run.batch_id
    with svc.engine.connect() as conn:
        estimate = conn.execute(sa.text("SELECT estimate_pico FROM batches WHERE id = :b"),
                                {"b": run.batch_id}).scalar_one()
    assert estimate is not None and estimate > 0


def test_a_source_with_no_requests_is_a_skipped_run(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "callable", "target": f"{HERE}.no_requests"}), owner=None, now=clock)
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert (run.status, run.reason) == ("skipped", "source produced no requests")


def test_a_path_source_reads_the_file_named_by_the_fire_date(svc: Services,
                                                             tmp_path: Path) -> None:
    (tmp_path / "in-2026-01-09.jsonl").write_text('{"custom_id":"yesterday"}\n')
    (tmp_path / "in-2026-01-10.jsonl").write_text('{"custom_id":"today"}\n')
    clock = Clock(T0)
    sched = schedules.create_schedule(
        svc, _spec({"kind": "path", "path": str(tmp_path / "in-{yesterday}.jsonl")}),
        owner=None, now=clock)
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "submitted" and run.file_id
    content = b"".join(files.iter_file_content(svc, run.file_id, owner=None))
    assert content == b'{"custom_id":"yesterday"}\n'


def test_a_missing_stored_file_fails_the_run(svc: Services) -> None:
    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": "file-nope"}),
                                      owner=None, now=clock)
    clock.now = (sched.next_fire_at or 0) + 1
    (run,) = schedules.tick(svc, now=clock).runs
    assert run.status == "failed" and "file-nope" in (run.error or "")


# ---- the batch's end reaches the schedule's webhook ---------------------------------------

def test_a_scheduled_batch_that_ends_posts_to_the_schedule_webhook(svc: Services) -> None:
    from batchyard.domain.webhooks import SIGNATURE_HEADER, verify_signature

    clock = Clock(T0)
    with Receiver([500, 200]) as receiver:
        sched = schedules.create_schedule(
            svc, _spec({"kind": "file", "file_id": _input_file(svc)}, webhook_url=receiver.url,
                       webhook_secret="per-schedule"), owner=None, now=clock)
        clock.now = (sched.next_fire_at or 0) + 1
        (run,) = schedules.tick(svc, now=clock).runs
        assert run.batch_id is not None
        _end_batch(svc, run.batch_id, "completed")
        assert schedules.tick(svc, now=clock).ended == 1
        for _ in range(50):
            notifications.deliver_due(svc)
            if len(receiver.requests) >= 2:
                break
            threading.Event().wait(0.02)
    import json
    import time

    assert len(receiver.requests) == 2
    last = receiver.requests[-1]
    assert verify_signature("per-schedule", last.headers[SIGNATURE_HEADER], last.body,
                            now=time.time())
    event = json.loads(last.body)
    assert event["type"] == "batch.completed" and event["data"]["id"] == run.batch_id
    assert event["data"]["request_counts"]["completed"] == 2
    (latest,) = schedules.list_runs(svc, sched.id, owner=None)
    assert latest.batch_status == "completed"


# ---- a scheduler killed mid-run -----------------------------------------------------------

def _claim_only(svc: Services, sched: Any, at: float) -> int:
    """What a scheduler killed right after claiming the slot leaves behind."""
    from batchyard.db import schedules as repo

    with svc.sessions.begin() as session:
        return repo.insert_run(session, schedule_id=sched.id, fire_time=sched.next_fire_at,
                               missed=0, now=at)


def test_a_run_left_started_by_a_dead_scheduler_is_settled_as_failed(svc: Services) -> None:
    from batchyard.services.schedule_runs import RUN_TIMEOUT_SECONDS

    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                      owner=None, now=clock)
    _claim_only(svc, sched, at=(sched.next_fire_at or 0) + 1)
    clock.now = (sched.next_fire_at or 0) + 2
    assert schedules.tick(svc, now=clock).runs == []  # the slot is taken: no second batch
    clock.advance(RUN_TIMEOUT_SECONDS + 1)
    assert schedules.tick(svc, now=clock).recovered == 1
    run = next(r for r in schedules.list_runs(svc, sched.id, owner=None)
               if r.fire_time == sched.next_fire_at)
    assert (run.status, run.batch_id) == ("failed", None)
    assert "scheduler stopped" in (run.reason or "")


def test_a_run_whose_batch_was_created_before_the_crash_is_settled_as_submitted(
        svc: Services) -> None:
    from batchyard.services import batches
    from batchyard.services.schedule_runs import RUN_TIMEOUT_SECONDS, batch_metadata

    clock = Clock(T0)
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                      owner=None, now=clock)
    _claim_only(svc, sched, at=(sched.next_fire_at or 0) + 1)
    batch = batches.create_batch(svc, owner=None, input_file_id=_input_file(svc),
                                 endpoint="/v1/chat/completions",
                                 metadata=batch_metadata(sched, sched.next_fire_at or 0))
    clock.now = (sched.next_fire_at or 0) + RUN_TIMEOUT_SECONDS + 2
    schedules.tick(svc, now=clock)
    run = next(r for r in schedules.list_runs(svc, sched.id, owner=None)
               if r.fire_time == sched.next_fire_at)
    assert (run.status, run.batch_id) == ("submitted", batch.id)


# ---- two scheduler processes --------------------------------------------------------------

def _fire_in_process(url: str, data_dir: str, schedule_id: str, fire_time: int,
                     barrier: Any, results: Any) -> None:
    """A separate scheduler process: same database, its own engine and connections."""
    services = build_services(schedule_settings(url, Path(data_dir)), nudge=Nudges())
    try:
        sched = schedules.get_schedule(services, schedule_id, owner=None)
        barrier.wait(timeout=60)
        run = schedules.fire_slot(services, sched, fire_time, now=fire_time + 1)
        results.put(run.id if run is not None else None)
    finally:
        services.close()


def test_two_scheduler_processes_firing_one_slot_make_one_batch(svc: Services,
                                                                tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    sched = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                      owner=None, now=T0)
    url = str(svc.settings.database_url)
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fire_in_process,
                         args=(url, str(tmp_path), sched.id, sched.next_fire_at, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(o is None for o in outcomes) == [False, True]
    runs = schedules.list_runs(svc, sched.id, owner=None)
    assert len(runs) == 1 and runs[0].status == "submitted"
    assert _batches_of(url, sched.id) == [runs[0].batch_id]


def test_a_broken_schedule_does_not_stop_the_others(svc: Services) -> None:
    clock = Clock(T0)
    good = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                     owner=None, now=clock)
    bad = schedules.create_schedule(svc, _spec({"kind": "file", "file_id": _input_file(svc)}),
                                    owner=None, now=clock)
    with svc.engine.begin() as conn:  # e.g. a zone removed from the host's tz database
        conn.execute(sa.text("UPDATE schedules SET timezone='Gone/Zone' WHERE id=:id"),
                     {"id": bad.id})
    clock.now = (good.next_fire_at or 0) + 1
    report = schedules.tick(svc, now=clock)
    assert [r.schedule_id for r in report.runs] == [good.id]

"""prepare sends each part on as soon as it is cut, and keeps every guarantee of the old
all-in-one-transaction split: a bad line anywhere still sends nothing, a prepare killed
between two part commits resumes without a duplicate or a lost request, and a cancel that
arrives while the input is still being split stops it cleanly (parts already at the provider
are cancelled there). On SQLite and PostgreSQL, against the emulator on a real port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.db import migrate
from batchyard.db.models import BatchRow
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services.container import Services, build_services
from batchyard.services.pipeline import run_task, run_tick
from batchyard.services.prepare import prepare_batch
from tests.e2e.helpers import fast_settings, jsonl, request_line, upload

_TERMINAL = ("completed", "failed", "cancelled", "expired")


class _Pipeline:
    """The pipeline's tasks run inline; ``on_nudge`` may act the moment a nudge is sent
    (e.g. run ``submit`` right away, as a free worker would), before prepare goes on."""

    def __init__(self, url: str, tmp_path: Path, emulator: EmulatorServer) -> None:
        self.settings = fast_settings(tmp_path, emulator_url=emulator.base_url,
                                      database_url=url, part_max_requests=4)
        migrate.upgrade(url)
        self.queue: deque[tuple[str, str]] = deque()
        self.sent: list[tuple[str, str]] = []
        self.on_nudge: Callable[[str, str], bool] | None = None
        self.svc: Services = build_services(self.settings, nudge=self._nudge)

    def _nudge(self, task: str, object_id: str) -> None:
        self.sent.append((task, object_id))
        if self.on_nudge is None or not self.on_nudge(task, object_id):
            self.queue.append((task, object_id))

    def batch(self, lines: bytes) -> str:
        return batch_service.create_batch(self.svc, owner=None, input_file_id=upload(
            self.svc, lines), endpoint="/v1/chat/completions").id

    def status(self, batch_id: str) -> str:
        return batch_service.get_batch(self.svc, batch_id, owner=None).status

    def run_until_done(self, batch_id: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.queue:
                run_task(self.svc, *self.queue.popleft())
            if (status := self.status(batch_id)) in _TERMINAL:
                return status
            run_tick(self.svc)
            time.sleep(0.05)
        raise AssertionError(f"batch {batch_id} still {self.status(batch_id)}")

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.svc.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]

    def make_due(self, batch_id: str) -> None:
        """What the sweep finds once a lease ran out: the batch is due again."""
        with self.svc.sessions.begin() as session:
            session.execute(sa.update(BatchRow).where(BatchRow.id == batch_id)
                            .values(due_at=time.time() - 1))


@pytest.fixture()
def pipeline(database_url: str, tmp_path: Path, emulator: EmulatorServer) -> Iterator[_Pipeline]:
    inline = _Pipeline(database_url, tmp_path, emulator)
    yield inline
    inline.svc.close()


def _lines(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [request_line(f"{prefix}{i}", f"question {i}") for i in range(n)]


def _sent_to_provider(emulator: EmulatorServer) -> tuple[list[str], list[str]]:
    """Names of the batch files uploaded, and part ids of the batches created."""
    stats = emulator.emulator.stats()
    return ([f["filename"] for f in stats["files"] if f["purpose"] == "batch"],
            [(b["metadata"] or {}).get("batchyard_part_id") for b in stats["batches"]])


def _submit_at_once(pipeline: _Pipeline) -> Callable[[str, str], bool]:
    def hook(task: str, object_id: str) -> bool:
        if task != "submit":
            return False
        run_task(pipeline.svc, task, object_id)
        return True
    return hook


def test_a_bad_last_line_of_a_multi_part_file_fails_the_batch_and_sends_nothing(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    pipeline.on_nudge = _submit_at_once(pipeline)  # a part written would be sent at once
    data = jsonl(_lines(15)) + b'{"custom_id": "last", "method": "POST"\n'  # 4 parts' worth
    batch_id = pipeline.batch(data)
    assert pipeline.run_until_done(batch_id) == "failed"
    batch = batch_service.get_batch(pipeline.svc, batch_id, owner=None)
    assert batch.errors is not None
    assert (batch.errors.data[0].line, batch.errors.data[0].code) == (16, "invalid_json_line")
    assert _sent_to_provider(emulator) == ([], [])
    assert pipeline.rows("SELECT id FROM parts") == []
    assert pipeline.rows("SELECT id FROM requests") == []
    assert not [n for n in pipeline.sent if n[0] == "submit"]


def test_the_first_part_is_submitted_before_the_last_part_is_written(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    pipeline.on_nudge = _submit_at_once(pipeline)
    batch_id = pipeline.batch(jsonl(_lines(10)))  # parts of 4, 4, 2
    written = prepare_batch(pipeline.svc, batch_id)
    events = pipeline.rows(
        "SELECT e.id, e.entity, e.to_status, p.seq FROM events e "
        "LEFT JOIN parts p ON p.id = e.part_id WHERE e.batch_id = :b ORDER BY e.id",
        b=batch_id)
    order = [(e["entity"], e["seq"], e["to_status"]) for e in events]
    first_sent = order.index(("part", 1, "submitted"))
    assert first_sent < order.index(("part", 3, "pending"))  # sent before the last was cut
    assert order.index(("part", 3, "pending")) < order.index(("batch", None, "in_progress"))
    assert [e for e in order if e[0] == "batch"] == [("batch", None, "validating"),
                                                     ("batch", None, "in_progress")]
    uploads, created = _sent_to_provider(emulator)
    assert sorted(created) == sorted(written) and len(written) == 3
    assert sorted(uploads) == sorted(f"{p}.jsonl" for p in written)
    batch = batch_service.get_batch(pipeline.svc, batch_id, owner=None)
    assert batch.status == "in_progress" and batch.request_counts.total == 10
    assert pipeline.run_until_done(batch_id) == "completed"
    assert Counter(r["custom_id"] for r in pipeline.rows(
        "SELECT custom_id FROM results WHERE batch_id = :b", b=batch_id)) == Counter(
        f"r{i}" for i in range(10))


def _prepare_killed_after_one_part(pipeline: _Pipeline, batch_id: str) -> int:
    """Run prepare in a child process that SIGKILLs itself right after its first part's
    commit (crash point ``mid_prepare``: committed, not yet nudged)."""
    env = {**os.environ, "BATCHYARD_DATABASE_URL": pipeline.settings.effective_database_url,
           "BATCHYARD_DATA_DIR": str(pipeline.settings.data_dir),
           "BATCHYARD_CRASH_AT": "mid_prepare",
           "BATCHYARD_PIPELINE__PART_MAX_REQUESTS": "4",
           "BATCHYARD_PIPELINE__INGEST_BATCH_ROWS": "3"}
    code = ("import sys\n"
            "from batchyard.config import Settings\n"
            "from batchyard.services.container import build_services\n"
            "from batchyard.services.prepare import prepare_batch\n"
            "svc = build_services(Settings(), nudge=lambda task, oid: None)\n"
            "prepare_batch(svc, sys.argv[1])\n")
    return subprocess.run([sys.executable, "-c", code, batch_id], env=env,
                          timeout=120, check=False).returncode


def test_a_prepare_killed_between_part_commits_resumes_without_duplicates(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    batch_id = pipeline.batch(jsonl(_lines(11)))  # parts of 4, 4, 3
    assert _prepare_killed_after_one_part(pipeline, batch_id) == -9
    assert [p["request_count"] for p in pipeline.rows("SELECT request_count FROM parts")] == [4]
    assert pipeline.status(batch_id) == "validating"
    assert prepare_batch(pipeline.svc, batch_id) == []  # its lease still holds
    pipeline.make_due(batch_id)
    (old,) = [p["id"] for p in pipeline.rows("SELECT id FROM parts")]
    written = prepare_batch(pipeline.svc, batch_id)
    assert len(written) == 2 and old not in written
    assert ("submit", old) in pipeline.sent  # the nudge lost with the crash is sent again
    parts = pipeline.rows("SELECT id, seq, request_count FROM parts ORDER BY seq")
    assert [(p["seq"], p["request_count"]) for p in parts] == [(1, 4), (2, 4), (3, 3)]
    requests = pipeline.rows("SELECT custom_id, line_no, part_id FROM requests ORDER BY line_no")
    assert [r["line_no"] for r in requests] == list(range(1, 12))
    assert [r["custom_id"] for r in requests] == [f"r{i}" for i in range(11)]
    assert [r["part_id"] for r in requests] == [p["id"] for p in parts for _ in
                                                range(p["request_count"])]
    batch = batch_service.get_batch(pipeline.svc, batch_id, owner=None)
    assert batch.status == "in_progress" and batch.request_counts.total == 11
    assert pipeline.run_until_done(batch_id) == "completed"
    uploads, created = _sent_to_provider(emulator)
    assert sorted(created) == sorted(p["id"] for p in parts)  # one provider batch per part
    assert sorted(uploads) == sorted(f"{p['id']}.jsonl" for p in parts)


def test_a_cancel_during_prepare_stops_the_split_and_cancels_what_was_sent(
        database_url: str, tmp_path: Path) -> None:
    # Slow requests: the provider batch is still running when the cancel reaches it.
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0,
                         request_latency=5.0)
    with EmulatorServer(cfg) as emulator:
        pipeline = _Pipeline(database_url, tmp_path, emulator)
        try:
            _cancel_during_prepare(pipeline, emulator)
        finally:
            pipeline.svc.close()


def _cancel_during_prepare(pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    batch_id = pipeline.batch(jsonl(_lines(12)))  # parts of 4, 4, 4

    def submit_then_cancel(task: str, object_id: str) -> bool:
        if task != "submit":
            return False
        run_task(pipeline.svc, task, object_id)  # part 1 reaches the provider
        batch_service.cancel_batch(pipeline.svc, batch_id, owner=None)  # the user cancels
        pipeline.on_nudge = None
        return True

    pipeline.on_nudge = submit_then_cancel
    written = prepare_batch(pipeline.svc, batch_id)
    assert len(written) == 1  # no part is written after the cancel
    assert pipeline.run_until_done(batch_id) == "cancelled"
    parts = pipeline.rows("SELECT id, status, request_count FROM parts")
    assert [p["id"] for p in parts] == written
    assert pipeline.rows("SELECT count(*) AS n FROM requests")[0]["n"] == 4
    created = emulator.emulator.stats()["batches"]
    assert [(b["metadata"] or {}).get("batchyard_part_id") for b in created] == written
    assert created[0]["status"] == "cancelled"
    assert parts[0]["status"] == "ingested"  # what it returned is kept
    part_events = pipeline.rows("SELECT to_status FROM events WHERE part_id = :p ORDER BY id",
                                p=written[0])
    assert "cancelling" in [e["to_status"] for e in part_events]  # cancelled at the provider
    statuses = pipeline.rows("SELECT to_status FROM events WHERE batch_id = :b AND "
                             "entity = 'batch' ORDER BY id", b=batch_id)
    assert [e["to_status"] for e in statuses] == ["validating", "cancelling", "cancelled"]


def test_a_second_prepare_of_the_same_batch_never_writes_a_part_twice(
        pipeline: _Pipeline) -> None:
    # A lease ran out while the first prepare was still splitting: the sweep's nudge starts
    # a second one. Here it runs (to the end) right after the first one's first part.
    batch_id = pipeline.batch(jsonl(_lines(11)))  # parts of 4, 4, 3
    second: list[list[str]] = []

    def second_prepare(task: str, _object_id: str) -> bool:
        if task == "submit" and pipeline.on_nudge is not None:
            pipeline.on_nudge = None
            pipeline.make_due(batch_id)
            second.append(prepare_batch(pipeline.svc, batch_id))
        return False

    pipeline.on_nudge = second_prepare
    first = prepare_batch(pipeline.svc, batch_id)
    assert len(first) == 1 and len(second[0]) == 2  # the first stopped at its next part
    parts = pipeline.rows("SELECT id, seq, request_count FROM parts ORDER BY seq")
    assert [(p["seq"], p["request_count"]) for p in parts] == [(1, 4), (2, 4), (3, 3)]
    assert sorted(p["id"] for p in parts) == sorted(first + second[0])
    requests = pipeline.rows("SELECT custom_id FROM requests ORDER BY line_no")
    assert [r["custom_id"] for r in requests] == [f"r{i}" for i in range(11)]
    assert batch_service.get_batch(pipeline.svc, batch_id, owner=None).status == "in_progress"
    assert pipeline.run_until_done(batch_id) == "completed"


def test_a_batch_cancelled_after_a_prepare_crash_ends_cancelled_with_its_part_stopped(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    batch_id = pipeline.batch(jsonl(_lines(11)))
    assert _prepare_killed_after_one_part(pipeline, batch_id) == -9
    batch_service.cancel_batch(pipeline.svc, batch_id, owner=None)
    pipeline.make_due(batch_id)
    assert prepare_batch(pipeline.svc, batch_id) == []  # hands the batch to the cancel task
    assert ("cancel", batch_id) in pipeline.queue
    assert pipeline.run_until_done(batch_id) == "cancelled"
    assert [p["status"] for p in pipeline.rows("SELECT status FROM parts")] == ["cancelled"]
    assert _sent_to_provider(emulator) == ([], [])


def test_a_part_that_ends_before_the_last_part_is_written_does_not_finalize_the_batch(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    batch_id = pipeline.batch(jsonl(_lines(12)))  # parts of 4, 4, 4

    def run_part_one_to_its_end(task: str, part_id: str) -> bool:
        if task != "submit" or pipeline.on_nudge is None:
            return False
        pipeline.on_nudge = None
        run_task(pipeline.svc, task, part_id)
        deadline = time.monotonic() + 30
        while pipeline.rows("SELECT status FROM parts WHERE id = :p",
                            p=part_id)[0]["status"] != "ingested":
            assert time.monotonic() < deadline, "part 1 did not end"
            while pipeline.queue:  # poll / ingest nudges (finalize too, if one were sent)
                run_task(pipeline.svc, *pipeline.queue.popleft())
            run_tick(pipeline.svc)
            time.sleep(0.05)
        while pipeline.queue:
            run_task(pipeline.svc, *pipeline.queue.popleft())
        assert pipeline.status(batch_id) == "validating"  # not finalized with 4 of 12
        # ... and still waiting for prepare: after a crash now, the sweep nudges prepare.
        assert pipeline.rows("SELECT stage FROM batches WHERE id = :b",
                             b=batch_id)[0]["stage"] == "accepted"
        return True

    pipeline.on_nudge = run_part_one_to_its_end
    assert len(prepare_batch(pipeline.svc, batch_id)) == 3
    assert pipeline.run_until_done(batch_id) == "completed"
    batch = batch_service.get_batch(pipeline.svc, batch_id, owner=None)
    assert (batch.request_counts.total, batch.request_counts.completed) == (12, 12)
    statuses = pipeline.rows("SELECT to_status FROM events WHERE batch_id = :b AND "
                             "entity = 'batch' ORDER BY id", b=batch_id)
    assert [e["to_status"] for e in statuses] == ["validating", "in_progress", "finalizing",
                                                  "completed"]


class _Broken(RuntimeError):
    pass


def test_a_prepare_that_keeps_failing_after_writing_a_part_stops_that_part(
        pipeline: _Pipeline, emulator: EmulatorServer) -> None:
    # Every run of prepare fails the same way after its first part's commit (here: the
    # broker refuses the submit nudge). The last time the step is given up; as parts
    # exist, the batch is stopped like a cancel instead of failed with a part left pending.
    def broker_down(task: str, _object_id: str) -> bool:
        if task == "submit":
            raise _Broken("no broker")
        return False

    pipeline.on_nudge = broker_down
    batch_id = pipeline.batch(jsonl(_lines(11)))
    for _ in range(pipeline.settings.pipeline.max_task_failures - 1):
        with pytest.raises(_Broken):
            run_task(pipeline.svc, "prepare", batch_id)
        assert pipeline.status(batch_id) == "validating"
        pipeline.make_due(batch_id)
    assert run_task(pipeline.svc, "prepare", batch_id) is None  # given up
    pipeline.on_nudge = None
    assert pipeline.status(batch_id) == "cancelling"
    pipeline.make_due(batch_id)
    pipeline.queue.append(("cancel", batch_id))  # the sweep's nudge, after stale_seconds
    assert pipeline.run_until_done(batch_id) == "cancelled"
    batch = batch_service.get_batch(pipeline.svc, batch_id, owner=None)
    assert batch.errors is not None and batch.errors.data[0].code == "internal_error"
    assert [p["status"] for p in pipeline.rows("SELECT status FROM parts")] == ["cancelled"]
    assert _sent_to_provider(emulator) == ([], [])

"""Work that can never succeed ends ``failed`` instead of being retried forever."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchyard.db import migrate
from batchyard.db.models import BatchRow, EventRow, PartRow
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from batchyard.services import keys, prepare, reports, submit
from batchyard.services.pipeline import run_task
from tests.e2e.helpers import (
    InlineDriver,
    fast_settings,
    fresh_pg_database,
    jsonl,
    request_line,
    upload,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_driver(request: pytest.FixtureRequest, tmp_path: Path,
               emulator: EmulatorServer) -> Iterator[InlineDriver]:
    if request.param == "sqlite":
        yield _driver(tmp_path, emulator, None)
        return
    with fresh_pg_database(request.getfixturevalue("postgres_url")) as url:
        yield _driver(tmp_path, emulator, url)


def _driver(tmp_path: Path, emulator: EmulatorServer, url: str | None) -> InlineDriver:
    settings = fast_settings(tmp_path, emulator_url=emulator.base_url, database_url=url,
                             max_task_failures=3)
    migrate.upgrade(settings.effective_database_url)
    return InlineDriver(settings)


def _status(driver: InlineDriver, batch_id: str) -> str:
    return batch_service.get_batch(driver.svc, batch_id, owner=None).status


def test_a_custom_id_with_a_nul_fails_the_batch_at_validation_with_line_1(
        any_driver: InlineDriver) -> None:
    data = jsonl([request_line("a\u0000b"), request_line("ok")])
    batch = batch_service.create_batch(any_driver.svc, owner=None,
                                       input_file_id=upload(any_driver.svc, data),
                                       endpoint="/v1/chat/completions")
    any_driver.run_until(lambda: _status(any_driver, batch.id) == "failed")
    final = batch_service.get_batch(any_driver.svc, batch.id, owner=None)
    assert final.errors is not None
    (error,) = final.errors.data
    assert (error.code, error.line) == ("invalid_text", 1) and "NUL" in error.message
    any_driver.svc.close()


def _make_due(driver: InlineDriver, batch_id: str) -> None:
    """What the sweep does after a lease runs out: the batch is due again."""
    with driver.svc.sessions.begin() as session:
        session.execute(sa.update(BatchRow).where(BatchRow.id == batch_id)
                        .values(due_at=time.time() - 1))


class _Poison(RuntimeError):
    pass


def _boom(*_args: object, **_kwargs: object) -> None:
    raise _Poison("this step can never succeed")


def test_a_step_failing_the_same_way_again_and_again_ends_its_batch_failed(
        any_driver: InlineDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "_split", _boom)
    svc = any_driver.svc
    principal = keys.Principal(owner="key_1", key=keys.ApiKey(
        id="key_1", name="k", key_prefix="sk-by-x", created_at=0, revoked_at=None,
        max_file_bytes=None, max_batches_in_flight=1, can_schedule=False))
    file_id = file_service.create_file(svc, owner="key_1", filename="in.jsonl",
                                       purpose="batch",
                                       stream=io.BytesIO(jsonl([request_line("a")]))).id
    batch = batch_service.create_batch(svc, owner="key_1", input_file_id=file_id,
                                       endpoint="/v1/chat/completions")
    with pytest.raises(Exception, match="batches in flight"):
        keys.ensure_batch_capacity(svc, principal)  # the key's one slot is taken
    for _ in range(2):
        with pytest.raises(_Poison):
            run_task(svc, "prepare", batch.id)
        assert _status(any_driver, batch.id) == "validating"
        _make_due(any_driver, batch.id)
    assert run_task(svc, "prepare", batch.id) is None  # the third time ends it
    final = batch_service.get_batch(svc, batch.id, owner=None)
    assert final.status == "failed" and final.errors is not None
    (error,) = final.errors.data
    assert error.code == "internal_error" and "prepare" in error.message
    assert "never succeed" not in error.message  # the class is named, not its text
    with svc.sessions() as session:
        reasons = list(session.scalars(sa.select(EventRow.reason).where(
            EventRow.batch_id == batch.id, EventRow.to_status == "failed")))
    assert reasons and "prepare" in reasons[0]
    keys.ensure_batch_capacity(svc, principal)  # the slot is free again
    svc.close()


def test_a_part_step_failing_again_and_again_ends_the_part_and_its_batch_failed(
        any_driver: InlineDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = any_driver.svc
    batch = batch_service.create_batch(svc, owner=None,
                                       input_file_id=upload(svc, jsonl([request_line("a")])),
                                       endpoint="/v1/chat/completions")
    run_task(svc, "prepare", batch.id)
    (part_id,) = [oid for task, oid in any_driver.queue if task == "submit"]
    any_driver.queue.clear()
    monkeypatch.setattr(submit, "_advance", _boom)
    for _ in range(2):
        with pytest.raises(_Poison):
            run_task(svc, "submit", part_id)
        with svc.sessions.begin() as session:
            session.execute(sa.update(PartRow).values(next_poll_at=0.0))
    assert run_task(svc, "submit", part_id) is None
    any_driver.run_until(lambda: _status(any_driver, batch.id) == "failed")
    (part,) = reports.list_parts(svc, batch.id, owner=None)
    assert part.status == "failed"
    final = batch_service.get_batch(svc, batch.id, owner=None)
    assert final.errors is not None and final.errors.data[0].code == "internal_error"
    assert "submit" in final.errors.data[0].message
    svc.close()

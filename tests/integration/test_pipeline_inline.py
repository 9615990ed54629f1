"""The pipeline services end to end against the emulator on a real port (no Celery)."""

from __future__ import annotations

from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from tests.e2e.helpers import (
    InlineDriver,
    jsonl,
    request_line,
    results_by_custom_id,
    upload,
)


def _status(driver: InlineDriver, batch_id: str) -> str:
    return batch_service.get_batch(driver.svc, batch_id, owner=None).status


def test_happy_path_splits_and_stores_one_result_per_request(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"req-{i}", f"question {i}") for i in range(10)]
    file_id = upload(driver.svc, jsonl(lines))
    batch = batch_service.create_batch(driver.svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: _status(driver, batch.id) == "completed")
    results = results_by_custom_id(driver.svc.engine, batch.id)
    assert sorted(results) == sorted(f"req-{i}" for i in range(10))
    assert all(len(rows) == 1 and rows[0]["ok"] for rows in results.values())
    assert emulator.emulator.stats()["batches_created"] == 3  # 10 lines, 4 per part
    final = batch_service.get_batch(driver.svc, batch.id, owner=None)
    assert (final.request_counts.total, final.request_counts.completed) == (10, 10)
    assert final.output_file_id is not None
    content = b"".join(file_service.iter_file_content(driver.svc, final.output_file_id,
                                                      owner=None))
    assert content.splitlines()[0].count(b'"req-0"') == 1
    assert len(content.splitlines()) == 10
    assert file_service.get_file(driver.svc, final.output_file_id, owner=None).bytes == len(
        content)


def test_a_bad_line_fails_the_batch_with_its_line_number_and_creates_nothing(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    data = jsonl([request_line("a"), request_line("b")]) + b"{not json\n"
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, data),
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: _status(driver, batch.id) == "failed")
    final = batch_service.get_batch(driver.svc, batch.id, owner=None)
    assert final.errors is not None and final.errors.data[0].line == 3
    with driver.svc.engine.connect() as conn:
        import sqlalchemy as sa

        assert conn.scalar(sa.text("SELECT count(*) FROM requests")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM parts")) == 0
    assert emulator.emulator.stats()["files_uploaded"] == 0

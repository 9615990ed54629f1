"""What a person watching a batch sees of its parts and first results."""

from __future__ import annotations

import pytest

from batchyard.emulator import EmulatorServer
from batchyard.errors import NotFoundError
from batchyard.services import batches as batch_service
from batchyard.services import reports
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload


def test_each_part_shows_its_deployment_provider_batch_and_counts(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"req-{i}", f"question {i}") for i in range(6)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: batch_service.get_batch(driver.svc, batch.id,
                                                     owner=None).status == "completed")
    parts = reports.list_parts(driver.svc, batch.id, owner=None)
    assert [p.seq for p in parts] == [1, 2]  # 6 lines, 4 per part
    assert [p.request_count for p in parts] == [4, 2]
    assert all(p.status == "ingested" and p.provider_status == "completed" for p in parts)
    assert all(p.provider_batch_id and p.deployment for p in parts)
    assert sum(p.completed for p in parts) == 6 and sum(p.failed for p in parts) == 0
    preview = reports.preview_results(driver.svc, batch.id, owner=None, limit=3)
    assert [r.custom_id for r in preview] == ["req-0", "req-1", "req-2"]
    assert all(r.status_code == 200 and r.answer for r in preview)


def test_parts_of_someone_elses_batch_are_not_found(driver: InlineDriver) -> None:
    batch = batch_service.create_batch(
        driver.svc, owner=None, input_file_id=upload(driver.svc, jsonl([request_line("a")])),
        endpoint="/v1/chat/completions")
    with pytest.raises(NotFoundError):
        reports.list_parts(driver.svc, batch.id, owner="key_other")

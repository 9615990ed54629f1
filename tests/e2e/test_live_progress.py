"""Live progress: while parts are at the provider, the Batch's request_counts follow the
provider's own counts (never going back), through a REAL worker against a slowed emulator."""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchyard.services import batches as batch_service
from batchyard.services import reports
from tests.e2e.helpers import jsonl, request_line, upload

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_request_counts_rise_before_the_batch_completes(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory(request_latency=0.1)
    _, workers, svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                   part_max_requests=20)
    workers.start()
    lines = [request_line(f"p{i}", f"question {i}") for i in range(40)]
    batch_id = batch_service.create_batch(svc, owner=None,
                                          input_file_id=upload(svc, jsonl(lines)),
                                          endpoint="/v1/chat/completions").id
    seen: list[tuple[str, int, int]] = []
    parts_seen: list[tuple[str | None, int]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        batch = batch_service.get_batch(svc, batch_id, owner=None)
        counts = batch.request_counts
        seen.append((batch.status, counts.completed, counts.failed))
        if batch.status == "in_progress":
            parts_seen += [(p.provider_status, p.completed)
                           for p in reports.list_parts(svc, batch_id, owner=None)]
        if batch.status == "completed":
            break
        time.sleep(0.05)
    assert seen[-1] == ("completed", 40, 0)
    running = [done for status, done, _ in seen if status == "in_progress"]
    assert any(0 < done < 40 for done in running), seen  # moved before the end
    done_so_far = [done for _, done, _ in seen]
    assert done_so_far == sorted(done_so_far), seen  # never backwards
    assert any(status == "in_progress" and 0 < done < 20 for status, done in parts_seen)
    assert workers.task_errors() == []

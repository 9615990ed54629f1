"""Cost with a REAL worker process and the emulator: spend survives a kill -9 during
ingest without double counting, and a batch cap stops a multi-part batch mid-way (a key
over its budget: tests/integration/test_api/test_costs_api.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.domain.pricing import Price, from_pico, request_cost
from batchyard.services import batches as batch_service
from batchyard.services.container import Services
from tests.e2e.helpers import jsonl, request_line, upload, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def _rows(svc: Services, batch_id: str) -> list[sa.Row]:
    with svc.engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT custom_id, input_tokens, output_tokens, cost_pico, error_code "
            "FROM results WHERE batch_id = :b"), {"b": batch_id}))


def _final(svc: Services, batch_id: str, *statuses: str, timeout: float = 90.0) -> Any:
    return wait_for(lambda: (b := batch_service.get_batch(svc, batch_id, owner=None)).status
                    in statuses and b, timeout=timeout, message=f"batch {statuses}")


def test_spend_survives_a_kill_during_ingest_without_double_counting(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                   part_max_requests=4, ingest_batch_rows=2)
    doomed = workers.start(crash_at="mid_ingest")
    lines = [request_line(f"k{i}", "count the words " * (i + 1)) for i in range(8)]
    batch = batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    assert doomed.wait(timeout=60) == -9  # killed between two flushes of one part's rows
    workers.start()
    final = _final(svc, batch.id, "completed", "failed")
    assert final.status == "completed"
    rows = _rows(svc, batch.id)
    assert sorted(r.custom_id for r in rows) == sorted(f"k{i}" for i in range(8))
    price = svc.prices.lookup(deployment_id="openai", model="gpt-4o-mini")
    assert isinstance(price, Price)
    expected = sum((request_cost(price, input_tokens=r.input_tokens,
                                 output_tokens=r.output_tokens) for r in rows), Decimal(0))
    assert Decimal(final.cost.actual) == expected > 0
    assert (final.cost.priced_requests, final.cost.unpriced_requests) == (8, 0)
    assert final.usage is not None
    assert final.usage.input_tokens == sum(r.input_tokens for r in rows)


def test_a_batch_cap_stops_a_multi_part_batch_midway_keeping_its_results(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                   part_max_requests=4)
    workers.start()
    lines = [request_line(f"c{i}", "a question " * 10) for i in range(12)]
    for line in lines:
        line["body"]["max_tokens"] = 30
    probe = batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    _final(svc, probe.id, "completed")
    with svc.engine.connect() as conn:
        one, two, three = conn.scalars(sa.text(
            "SELECT estimate_pico FROM parts WHERE batch_id = :b ORDER BY seq"), {"b": probe.id})
    cap = from_pico(one + two + three // 2)  # room for two parts of three
    sent_before = emulator.emulator.stats()["batches_created"]
    batch = batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions",
                                       metadata={"max_cost_usd": str(cap)})
    final = _final(svc, batch.id, "cancelled", "completed", "failed")
    assert final.status == "cancelled"
    assert final.errors is not None and final.errors.data[0].code == "budget_exceeded"
    assert emulator.emulator.stats()["batches_created"] - sent_before == 2
    rows = _rows(svc, batch.id)
    assert len(rows) == 12
    assert sum(r.error_code == "batch_cancelled" for r in rows) >= 4  # the part never sent
    spent = sum((from_pico(r.cost_pico) for r in rows if r.cost_pico), Decimal(0))
    assert Decimal(final.cost.actual) == spent <= cap
    assert workers.task_errors() == []

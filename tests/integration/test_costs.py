"""Cost ledger through the pipeline (inline, emulator on a real port): exact row costs from
the emulator's deterministic usage, stored sums that agree with the rows, estimates."""

from __future__ import annotations

import tempfile
from decimal import Decimal

import sqlalchemy as sa

from batchyard.db.costs import refresh_batch_totals
from batchyard.db.models import BatchRow, PartRow
from batchyard.domain.pricing import Price, from_pico, request_cost
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services import costs
from batchyard.services.ingest import ingest_stream
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload


def _rows(driver: InlineDriver, batch_id: str) -> list[sa.Row]:
    with driver.svc.engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT custom_id, model, input_tokens, output_tokens, cached_tokens, cost_pico, "
            "cost_currency, price_source, unpriced_reason FROM results WHERE batch_id = :b "
            "ORDER BY line_no"), {"b": batch_id}))


def _run(driver: InlineDriver, lines: list[dict], **kw: object) -> str:
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions", **kw)  # type: ignore[arg-type]
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "completed")
    return batch.id


def test_each_result_is_priced_exactly_and_the_batch_sums_agree(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"r{i}", "word " * (i * 7 + 1)) for i in range(10)]
    batch_id = _run(driver, lines)
    price = driver.svc.prices.lookup(deployment_id="openai", model="gpt-4o-mini")
    assert isinstance(price, Price)
    rows = _rows(driver, batch_id)
    assert len(rows) == 10
    for row in rows:
        expected = request_cost(price, input_tokens=row.input_tokens,
                                output_tokens=row.output_tokens)
        assert row.input_tokens > 0 and from_pico(row.cost_pico) == expected
        assert (row.cost_currency, row.price_source) == ("USD", price.source)
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    total = sum((from_pico(r.cost_pico) for r in rows), Decimal(0))
    assert Decimal(final.cost.actual) == total > 0
    assert (final.cost.priced_requests, final.cost.unpriced_requests) == (10, 0)
    assert final.usage is not None
    assert final.usage.input_tokens == sum(r.input_tokens for r in rows)
    # Every grouping adds up to the same rows.
    for group_by in ("batch", "part", "key", "model", "deployment", "day", "schedule"):
        report = costs.cost_report(driver.svc, group_by=group_by)
        assert sum((line.cost_usd for line in report), Decimal(0)) == total, group_by
        assert sum(line.requests for line in report) == 10
    by_model = costs.cost_report(driver.svc, group_by="model")
    assert [line.group for line in by_model] == ["gpt-4o-mini"]


def test_the_estimate_is_recorded_and_bounds_the_actual(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"r{i}", "tell me about batches " * 5) for i in range(6)]
    for line in lines:
        line["body"]["max_tokens"] = 40
    batch_id = _run(driver, lines)
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    assert final.cost.estimate is not None
    estimate, actual = Decimal(final.cost.estimate), Decimal(final.cost.actual)
    assert 0 < actual <= estimate
    with driver.svc.engine.connect() as conn:
        parts = conn.scalar(sa.text("SELECT sum(estimate_pico) FROM parts WHERE batch_id=:b"),
                            {"b": batch_id})
    assert from_pico(parts) == estimate


def test_an_unknown_model_is_stored_unpriced_with_the_reason(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"r{i}", model="house-model-7") for i in range(3)]
    batch_id = _run(driver, lines)
    rows = _rows(driver, batch_id)
    assert all(r.cost_pico is None and "house-model-7" in r.unpriced_reason for r in rows)
    final = batch_service.get_batch(driver.svc, batch_id, owner=None)
    assert (final.cost.actual, final.cost.estimate) == ("0", None)
    assert (final.cost.priced_requests, final.cost.unpriced_requests) == (0, 3)
    report = costs.cost_report(driver.svc, group_by="batch")
    assert report[0].unpriced == 3 and report[0].cost_usd == 0


def test_ingesting_a_part_again_counts_nothing_twice(
        driver: InlineDriver, emulator: EmulatorServer) -> None:

    batch_id = _run(driver, [request_line(f"r{i}") for i in range(5)])
    before = batch_service.get_batch(driver.svc, batch_id, owner=None).cost
    with driver.svc.sessions() as session:
        part = session.scalars(sa.select(PartRow).where(PartRow.batch_id == batch_id)).first()
        batch = session.get(BatchRow, batch_id)
    assert part is not None and batch is not None
    # Replay the part's own output file through ingest.
    provider = driver.svc.providers.for_deployment(str(part.deployment))
    with tempfile.TemporaryFile() as tmp:
        provider.download_file(str(part.provider_output_file_id), tmp)
        tmp.seek(0)
        assert ingest_stream(driver.svc, part, batch, tmp) > 0
    with driver.svc.sessions.begin() as session:
        refresh_batch_totals(session, batch_id)
    assert batch_service.get_batch(driver.svc, batch_id, owner=None).cost == before


def _estimates(driver: InlineDriver, batch_id: str) -> list[int]:
    with driver.svc.engine.connect() as conn:
        return [int(v) for v in conn.scalars(sa.text(
            "SELECT estimate_pico FROM parts WHERE batch_id = :b ORDER BY seq"), {"b": batch_id})]


def test_a_batch_cap_stops_sending_parts_and_keeps_what_is_in(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"r{i}", "a question " * 10) for i in range(12)]  # 3 parts of 4
    for line in lines:
        line["body"]["max_tokens"] = 30
    # The same file without a cap tells what each part is estimated at.
    probe = _run(driver, lines)
    one, two, three = _estimates(driver, probe)
    cap = from_pico(one + two + three // 2)
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions",
                                       metadata={"max_cost_usd": str(cap)})
    sent_before = emulator.emulator.stats()["batches_created"]
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "cancelled")
    final = batch_service.get_batch(driver.svc, batch.id, owner=None)
    assert final.errors is not None and final.errors.data[0].code == "budget_exceeded"
    assert emulator.emulator.stats()["batches_created"] - sent_before == 2
    rows = _rows(driver, batch.id)
    assert len(rows) == 12  # every request has a final row: answered, or never sent
    with driver.svc.engine.connect() as conn:
        never_sent = conn.scalar(sa.text(
            "SELECT count(*) FROM results r JOIN parts p ON p.id = r.part_id "
            "WHERE r.batch_id = :b AND p.seq = 3 AND r.error_code = 'batch_cancelled'"),
            {"b": batch.id})
    assert never_sent == 4
    spent = sum((from_pico(r.cost_pico) for r in rows if r.cost_pico is not None), Decimal(0))
    assert Decimal(final.cost.actual) == spent <= cap


def test_a_retry_part_is_judged_at_the_batchs_estimate_per_request(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    from batchyard.services.costs import cap_refusal

    batch_id = _run(driver, [request_line(f"r{i}") for i in range(4)])
    spent = sum(r.cost_pico for r in _rows(driver, batch_id))
    with driver.svc.sessions() as session:
        batch = session.get(BatchRow, batch_id)
        assert batch is not None and batch.estimate_pico
        retry = PartRow(id="part_retry", batch_id=batch_id, seq=9, attempt=2, status="pending",
                        request_count=2, estimate_pico=None, created_at=0.0, updated_at=0.0)
        per_request = batch.estimate_pico * 2 // batch.total
        batch.metadata_ = {"max_cost_usd": str(from_pico(spent + per_request))}
        assert cap_refusal(session, batch, retry) is None
        batch.metadata_ = {"max_cost_usd": str(from_pico(spent + per_request - 1))}
        refusal = cap_refusal(session, batch, retry)
        assert refusal is not None and "max_cost_usd" in refusal

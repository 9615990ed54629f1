"""Ingest on PostgreSQL: rows are COPYed straight into ``results`` until one already exists
(a re-ingest after a crash), then merged; either way one row per (batch, custom_id)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchyard.db import migrate
from batchyard.db.models import TOTAL_KEYS, BatchRow, PartRow
from batchyard.db.results import RESULT_WRITE_COLUMNS, part_totals_sum, write_results
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services.ingest import ingest_stream
from tests.e2e.helpers import InlineDriver, fast_settings, jsonl, request_line, upload

pytestmark = pytest.mark.postgres


@pytest.fixture()
def pg_driver(tmp_path: Path, emulator: EmulatorServer,
              postgres_url: str) -> Iterator[InlineDriver]:
    settings = fast_settings(tmp_path, emulator_url=emulator.base_url,
                             database_url=postgres_url, ingest_batch_rows=2)
    migrate.upgrade(settings.effective_database_url)
    inline = InlineDriver(settings)
    yield inline
    inline.svc.close()


def _results(driver: InlineDriver, batch_id: str) -> list[tuple]:
    with driver.svc.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT custom_id, ok, attempt, rendered_bytes, input_tokens, cost_pico "
            "FROM results WHERE batch_id = :b ORDER BY custom_id"), {"b": batch_id})]


def test_a_second_ingest_of_a_part_falls_back_to_merging_and_changes_nothing(
        pg_driver: InlineDriver) -> None:
    driver = pg_driver
    batch = batch_service.create_batch(
        driver.svc, owner=None, endpoint="/v1/chat/completions",
        input_file_id=upload(driver.svc, jsonl([request_line(f"c{i}") for i in range(4)])))
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "completed")
    before = _results(driver, batch.id)
    assert [r[0] for r in before] == ["c0", "c1", "c2", "c3"] and all(r[1] for r in before)
    assert all(r[3] > 0 for r in before)  # the rendered line length is stored at ingest
    with driver.svc.sessions() as session:
        part = session.scalars(sa.select(PartRow).where(PartRow.batch_id == batch.id)).one()
        row = session.get(BatchRow, batch.id)
    assert row is not None
    provider = driver.svc.providers.for_deployment(str(part.deployment))
    with tempfile.TemporaryFile() as tmp:
        provider.download_file(str(part.provider_output_file_id), tmp)
        tmp.seek(0)
        assert ingest_stream(driver.svc, part, row, tmp) == 4
    assert _results(driver, batch.id) == before


def test_write_results_copies_fresh_rows_and_merges_once_one_exists(
        pg_driver: InlineDriver) -> None:
    driver = pg_driver
    batch = batch_service.create_batch(
        driver.svc, owner=None, endpoint="/v1/chat/completions",
        input_file_id=upload(driver.svc, jsonl([request_line("x")])))

    def row(custom_id: str, attempt: int, ok: bool) -> tuple:
        values = dict.fromkeys(RESULT_WRITE_COLUMNS)
        # One input line per custom_id, as ingest gives them (a result is keyed by its line).
        values.update(batch_id=batch.id, custom_id=custom_id,
                      line_no=" abc".index(custom_id), attempt=attempt,
                      ok=ok, input_tokens=0, output_tokens=0, total_tokens=0,
                      rendered_bytes=10, created_at=0, cached_tokens=0)
        return tuple(values[c] for c in RESULT_WRITE_COLUMNS)

    with driver.svc.sessions.begin() as session:
        assert write_results(session, [row("a", 1, False), row("b", 1, True)], fresh=True)
    with driver.svc.sessions.begin() as session:
        # "a" exists: the plain COPY is rolled back to its savepoint and the rows merged
        # (a newer attempt replaces the older outcome; the same attempt changes nothing).
        assert not write_results(session, [row("a", 2, True), row("c", 1, True),
                                           row("b", 1, False)], fresh=True)
    with driver.svc.engine.connect() as conn:
        got = dict(conn.execute(sa.text(
            "SELECT custom_id, ok FROM results WHERE batch_id = :b"), {"b": batch.id}).all())
    assert got == {"a": True, "b": True, "c": True}


def test_the_parts_sums_equal_the_result_rows_and_the_batch_shows_them(
        pg_driver: InlineDriver) -> None:
    driver = pg_driver
    lines = [request_line(f"s{i}", "word " * (i + 1)) for i in range(6)]
    lines += [request_line("bad", x_emulator={"status": 400}),
              request_line("flaky", x_emulator={"status": 500, "times": 1})]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       endpoint="/v1/chat/completions",
                                       input_file_id=upload(driver.svc, jsonl(lines)))
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "completed")
    with driver.svc.sessions() as session:
        summed = part_totals_sum(session, batch.id)
        rows = session.execute(sa.text(
            "SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok), "
            "sum(input_tokens), sum(output_tokens), sum(cached_tokens), "
            "coalesce(sum(cost_pico), 0), count(cost_pico), count(unpriced_reason), "
            "coalesce(sum(rendered_bytes) FILTER (WHERE ok), 0), "
            "coalesce(sum(rendered_bytes) FILTER (WHERE NOT ok), 0) "
            "FROM results WHERE batch_id = :b"), {"b": batch.id}).one()
    assert summed is not None
    assert [summed[k] for k in TOTAL_KEYS] == [int(v) for v in rows]
    assert summed["completed"] == 7 and summed["failed"] == 1  # "flaky" passed on retry
    final = batch_service.get_batch(driver.svc, batch.id, owner=None)
    assert final.request_counts.completed == 7 and final.request_counts.failed == 1
    assert final.usage is not None and final.usage.input_tokens == summed["input_tokens"]
    with driver.svc.sessions() as session:
        sizes = {kind: size for kind, size in session.execute(sa.text(
            "SELECT kind, bytes FROM files WHERE id IN (:o, :e)"),
            {"o": final.output_file_id, "e": final.error_file_id})}
    assert sizes == {"output": summed["output_bytes"], "error": summed["error_bytes"]}


def test_a_cancelled_batchs_unanswered_requests_are_counted_in_the_parts_sums(
        pg_driver: InlineDriver) -> None:
    driver = pg_driver
    batch = batch_service.create_batch(
        driver.svc, owner=None, endpoint="/v1/chat/completions",
        input_file_id=upload(driver.svc, jsonl([request_line(f"x{i}") for i in range(10)])))
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "in_progress")
    batch_service.cancel_batch(driver.svc, batch.id, owner=None)
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "cancelled")
    with driver.svc.sessions() as session:
        summed = part_totals_sum(session, batch.id)
        count, size = session.execute(sa.text(
            "SELECT count(*), sum(rendered_bytes) FROM results WHERE batch_id = :b"),
            {"b": batch.id}).one()
    assert summed is not None and count == 10
    assert summed["completed"] + summed["failed"] == 10
    assert summed["output_bytes"] + summed["error_bytes"] == size

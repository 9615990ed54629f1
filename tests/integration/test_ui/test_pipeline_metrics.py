"""The state gauges of /metrics while parts are live, against the database (SQLite, inline)."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from batchyard.services import batches as batch_service
from batchyard.ui.pipeline_metrics import scrape
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload

LIVE = ("pending", "uploading", "uploaded", "submitting", "submitted", "cancelling", "ingesting")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _submitted(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM parts WHERE status = 'submitted'")).scalar_one())


def test_live_parts_and_open_batches_are_exposed_as_the_database_holds_them(
        driver: InlineDriver) -> None:
    svc = driver.svc
    file_id = upload(svc, jsonl([request_line(f"r{i}") for i in range(10)]))
    batch_id = batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                          endpoint="/v1/chat/completions").id
    driver.run_until(lambda: _submitted(svc.engine) > 0)
    with svc.engine.connect() as conn:
        live = conn.execute(sa.text(
            "SELECT status, deployment, count(*), sum(request_count) FROM parts "
            f"WHERE status IN {LIVE} GROUP BY status, deployment")).all()
        status, created = conn.execute(sa.text(
            "SELECT status, created_at FROM batches WHERE id = :b"), {"b": batch_id}).one()
    samples = _samples(scrape(svc.engine).decode())
    exposed = {dict(k[1])["status"]: v for k, v in samples.items() if k[0] == "batchyard_parts"}
    assert exposed == {row[0]: row[2] for row in live}
    assert samples[("batchyard_batches", frozenset({("status", status)}))] == 1
    assert samples[("batchyard_requests", frozenset({("state", "pending")}))] == 10
    assert samples[("batchyard_oldest_inflight_batch_age_seconds", frozenset())] >= 0
    deployment = live[0][1]
    assert samples[("batchyard_inflight_requests", frozenset({("deployment", deployment)}))] == \
        sum(row[3] for row in live if row[1] == deployment)
    assert created > 0

"""prepare streams its split (request rows written batch by batch), on SQLite and PostgreSQL:
every request lands in exactly one part with the right counts and bytes, and a bad line in a
later part, after earlier parts' rows were written, still leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from batchyard.config import PipelineSettings, Settings
from batchyard.db import migrate
from batchyard.deployments import DeploymentRegistry
from batchyard.domain.jsonl import rewrite_model
from batchyard.domain.routing import Deployment
from batchyard.services import batches as batch_service
from batchyard.services.container import Services, build_services
from batchyard.services.prepare import prepare_batch
from tests.e2e.helpers import jsonl, request_line, upload


@pytest.fixture()
def nudges() -> list[tuple[str, str]]:
    return []


def _services(url: str, tmp_path: Path, nudges: list[tuple[str, str]],
              deployments: DeploymentRegistry | None = None, **pipeline: Any) -> Services:
    migrate.upgrade(url)
    settings = Settings(data_dir=tmp_path, database_url=url,
                        pipeline=PipelineSettings(**pipeline))
    return build_services(settings, nudge=lambda task, oid: nudges.append((task, oid)),
                          deployments=deployments)


def _batch(svc: Services, data: bytes) -> str:
    return batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, data),
                                      endpoint="/v1/chat/completions").id


def _lines(n: int) -> list[dict[str, Any]]:
    # Varied lengths, so byte totals would catch a line counted in the wrong part.
    return [request_line(f"req-{i}", "q" * (i % 7) + f" question {i}") for i in range(n)]


def _parts(svc: Services) -> list[dict[str, Any]]:
    with svc.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT id, seq, status, request_count, byte_size FROM parts ORDER BY seq"))
            .mappings()]


def _requests(svc: Services) -> list[dict[str, Any]]:
    with svc.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT custom_id, line_no, part_id, body, state FROM requests ORDER BY line_no"))
            .mappings()]


def _count(svc: Services, table: str) -> int:
    with svc.engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


def test_a_streamed_split_puts_every_request_in_exactly_one_part(
        database_url: str, tmp_path: Path, nudges: list[tuple[str, str]]) -> None:
    # Parts of 5 written in batches of 2 rows: every part takes several inserts, and part
    # boundaries fall inside and between batches.
    svc = _services(database_url, tmp_path, nudges, part_max_requests=5, ingest_batch_rows=2)
    lines = _lines(23)
    batch_id = _batch(svc, jsonl(lines))
    part_ids = prepare_batch(svc, batch_id)
    parts, requests = _parts(svc), _requests(svc)
    assert [p["id"] for p in parts] == part_ids and [p["seq"] for p in parts] == [1, 2, 3, 4, 5]
    assert [p["request_count"] for p in parts] == [5, 5, 5, 5, 3]
    assert sorted(r["custom_id"] for r in requests) == sorted(ln["custom_id"] for ln in lines)
    assert [r["line_no"] for r in requests] == list(range(1, 24))
    by_part: dict[str, list[dict[str, Any]]] = {}
    for row in requests:
        by_part.setdefault(row["part_id"], []).append(row)
    for part in parts:
        rows = by_part[part["id"]]
        assert len(rows) == part["request_count"]
        assert part["byte_size"] == sum(len(r["body"].encode()) + 1 for r in rows)
    # Parts hold consecutive lines in input order.
    assert [r["part_id"] for r in requests] == [pid for pid in part_ids for _ in range(5)][:23]
    assert [r["body"].encode() for r in requests] == [orjson.dumps(ln) for ln in lines]
    batch = batch_service.get_batch(svc, batch_id, owner=None)
    assert batch.status == "in_progress" and batch.request_counts.total == 23
    assert [n for n in nudges if n[0] == "submit"] == [("submit", p) for p in part_ids]
    svc.close()


def test_parts_respect_the_byte_limit_with_room_for_a_model_rewrite(
        database_url: str, tmp_path: Path, nudges: list[tuple[str, str]]) -> None:
    dep = Deployment(id="az", model_name="gpt-4o-mini", provider="azure",
                     model="a-rather-long-azure-deployment-name-for-gpt-4o-mini")
    limit = 620  # four lines fit as uploaded, but not once their model name is rewritten
    svc = _services(database_url, tmp_path, nudges, DeploymentRegistry([dep]),
                    part_max_requests=1000, part_max_bytes=limit, ingest_batch_rows=3)
    lines = _lines(17)
    prepare_batch(svc, _batch(svc, jsonl(lines)))
    parts, requests = _parts(svc), _requests(svc)
    assert len(parts) > 2 and sum(p["request_count"] for p in parts) == 17
    for part in parts:
        rewritten = [rewrite_model(r["body"].encode(), dep.model) for r in requests
                     if r["part_id"] == part["id"]]
        assert sum(len(line) + 1 for line in rewritten) <= limit  # the uploaded file fits
    svc.close()


@pytest.mark.parametrize(("bad_line", "code"), [
    (b"{not json", "invalid_json_line"),
    (orjson.dumps(request_line("req-3")), "duplicate_custom_id"),
    (orjson.dumps(request_line("other", model="gpt-4o")), "model_mismatch"),
])
def test_a_bad_line_in_a_later_part_leaves_nothing_behind(
        database_url: str, tmp_path: Path, nudges: list[tuple[str, str]], bad_line: bytes,
        code: str) -> None:
    svc = _services(database_url, tmp_path, nudges, part_max_requests=4, ingest_batch_rows=3)
    # 30 good lines (7 parts' worth of rows written first), then the bad one on line 31.
    data = jsonl(_lines(30)) + bad_line + b"\n" + jsonl([request_line("after")])
    batch_id = _batch(svc, data)
    assert prepare_batch(svc, batch_id) == []
    batch = batch_service.get_batch(svc, batch_id, owner=None)
    assert batch.status == "failed" and batch.errors is not None
    assert (batch.errors.data[0].line, batch.errors.data[0].code) == (31, code)
    assert (_count(svc, "requests"), _count(svc, "parts")) == (0, 0)
    with svc.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM events WHERE entity = 'part'")) == 0
    assert not [n for n in nudges if n[0] == "submit"]
    svc.close()


def test_preparing_twice_writes_the_rows_once(
        database_url: str, tmp_path: Path, nudges: list[tuple[str, str]]) -> None:
    svc = _services(database_url, tmp_path, nudges, part_max_requests=4, ingest_batch_rows=3)
    batch_id = _batch(svc, jsonl(_lines(9)))
    first = prepare_batch(svc, batch_id)
    assert len(first) == 3 and prepare_batch(svc, batch_id) == []
    assert (_count(svc, "requests"), _count(svc, "parts")) == (9, 3)
    svc.close()

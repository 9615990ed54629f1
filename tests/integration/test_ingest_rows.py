"""Ingest's result rows on SQLite and PostgreSQL (binary COPY): each stored row renders the
provider's answer, its stored line length is the rendered line's, its cost is the pricer's,
and a second ingest of the same file adds nothing."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from batchyard.config import Settings
from batchyard.db import migrate
from batchyard.db.models import BatchRow, PartRow
from batchyard.db.results import iter_batch_results, render_row
from batchyard.domain.jsonl import iter_output_lines
from batchyard.services.container import Services, build_services
from batchyard.services.costs import RowPricer
from batchyard.services.ingest import ingest_stream

_UNICODE = 'é ü 漢字 \u2028 emoji \U0001f600 quote " backslash \\ tab \t newline \n nul-free'


def _answer(content: str, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": usage, **extra}


#: custom_id -> the provider's output line (response or error).
LINES: dict[str, dict[str, Any]] = {
    "plain": {"response": {"status_code": 200, "request_id": "req_1", "body": _answer(
        "hi", {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42})}},
    "cached": {"response": {"status_code": 200, "request_id": "req_2", "body": _answer(
        _UNICODE, {"prompt_tokens": 1000, "completion_tokens": 5, "total_tokens": 1005,
                   "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0}},
        numbers=[1.5, -0.0, 1e300, 12345678901234567890, None, True])}},
    "cache write": {"response": {"status_code": 200, "request_id": None, "body": _answer(
        "w", {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 300,
              "cache_creation_input_tokens": 50})}},
    "no usage": {"response": {"status_code": 200, "request_id": "req_4",
                              "body": {"object": "embedding", "data": []}}},
    "bad": {"response": {"status_code": 400, "request_id": "req_5", "body": {"error": {
        "message": "no", "type": "invalid_request_error", "code": "bad_thing"}}}},
    "cancelled": {"response": None, "error": {"code": "batch_cancelled",
                                              "message": "cancelled: " + _UNICODE}},
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    services = build_services(Settings(data_dir=tmp_path, database_url=url),
                              nudge=lambda task, object_id: None)
    yield services
    services.close()


def _part(svc: Services) -> tuple[PartRow, BatchRow]:
    """A batch with one part in ``ingesting`` holding one request per line of LINES."""
    batch_id, part_id, now = f"batch_{uuid.uuid4().hex}", f"part_{uuid.uuid4().hex}", time.time()
    file_id = f"file-{uuid.uuid4().hex}"
    with svc.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO files (id, filename, purpose, bytes, created_at, status, kind, deleted)"
            " VALUES (:f, 'in.jsonl', 'batch', 0, :t, 'processed', 'input', false)"),
            {"f": file_id, "t": int(now)})
        conn.execute(sa.text(
            "INSERT INTO batches (id, endpoint, input_file_id, completion_window, status, "
            "created_at, total, completed, failed, input_tokens, output_tokens, cached_tokens,"
            " reasoning_tokens, stage, cancel_requested, updated_at, due_at) VALUES "
            "(:b, '/v1/chat/completions', :f, '24h', 'in_progress', :t, :n, 0, 0, "
            "0, 0, 0, 0, 'running', false, :t, :t)"),
            {"b": batch_id, "f": file_id, "t": int(now), "n": len(LINES)})
        conn.execute(sa.text(
            "INSERT INTO parts (id, batch_id, seq, attempt, deployment, status, request_count,"
            " byte_size, estimated_tokens, side_effect_attempts, provider_done, created_at, "
            "updated_at) VALUES (:p, :b, 1, 1, 'openai', 'ingesting', :n, 0, 0, 1, 0, :t, :t)"),
            {"p": part_id, "b": batch_id, "n": len(LINES), "t": now})
        conn.execute(sa.text(
            "INSERT INTO requests (batch_id, custom_id, line_no, body, part_id, attempt, "
            "state) VALUES (:b, :c, :l, '{}', :p, 1, 'submitted')"),
            [{"b": batch_id, "c": cid, "l": n, "p": part_id}
             for n, cid in enumerate(LINES, 1)])
    with svc.sessions() as session:
        part, batch = session.get(PartRow, part_id), session.get(BatchRow, batch_id)
    assert part is not None and batch is not None
    return part, batch


def _output() -> bytes:
    return b"".join(orjson.dumps({"id": f"batch_req_{n}", "custom_id": cid, "error": None,
                                  **line}) + b"\n" for n, (cid, line) in enumerate(LINES.items()))


def test_stored_rows_render_the_providers_answers_with_their_lengths_and_costs(
        svc: Services) -> None:
    part, batch = _part(svc)
    data = _output()
    assert ingest_stream(svc, part, batch, io.BytesIO(data)) == len(LINES)
    parsed = {line.custom_id: line for line in iter_output_lines([data])}
    pricer = RowPricer(svc, part, batch)
    with svc.sessions() as session:
        rows = list(iter_batch_results(session, batch.id))
    assert [row.custom_id for row in rows] == list(LINES)  # one each, in input order
    for row in rows:
        rendered = render_row(row)
        assert len(rendered) == _stored_length(svc, batch.id, row.custom_id)
        sent = LINES[row.custom_id]
        obj = orjson.loads(rendered)
        if sent["response"] is None:
            assert obj["response"] is None and obj["error"] == sent["error"]
        else:
            # The body is the provider's, byte for byte as orjson writes it.
            assert orjson.dumps(obj["response"]["body"]) == orjson.dumps(
                sent["response"]["body"])
            assert rendered.count(orjson.dumps(sent["response"]["body"])) == 1
            assert obj["response"]["request_id"] == sent["response"]["request_id"]
        assert (row.model, row.cost_pico, row.cost_currency, row.price_source,
                row.unpriced_reason) == pricer.values(parsed[row.custom_id])
    assert rows[1].cost_pico is not None and rows[1].cached_tokens == 600
    # A second ingest of the same file (a retry after a crash) changes nothing.
    assert ingest_stream(svc, part, batch, io.BytesIO(data)) == len(LINES)
    with svc.sessions() as session:
        again = list(iter_batch_results(session, batch.id))
    assert [tuple(r) for r in again] == [tuple(r) for r in rows]


def _stored_length(svc: Services, batch_id: str, custom_id: str) -> int:
    with svc.engine.connect() as conn:
        return int(conn.scalar(sa.text(
            "SELECT rendered_bytes FROM results WHERE batch_id = :b AND custom_id = :c"),
            {"b": batch_id, "c": custom_id}))

"""Helpers shared by the pipeline tests: fast settings, JSONL builders, waits, SQL checks."""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import SecretStr

from batchyard.config import HttpSettings, PipelineSettings, Settings
from batchyard.services import files as file_service
from batchyard.services.container import Services, build_services
from batchyard.services.pipeline import run_task, run_tick


def fast_settings(data_dir: Path, *, emulator_url: str, database_url: str | None = None,
                  broker_url: str | None = None, queue: str = "batchyard",
                  **pipeline: Any) -> Settings:
    """Settings with near-zero delays for tests (poll tick 0.2 s)."""
    knobs: dict[str, Any] = {"part_max_requests": 4, "poll_min_seconds": 0.1,
                             "poll_max_seconds": 0.5, "poll_backoff": 1.5, "tick_seconds": 0.2,
                             "stale_seconds": 2.0, "quota_retry_seconds": 0.5,
                             "ingest_batch_rows": 3, "provider_list_lag_seconds": 0.5,
                             "queue": queue}
    knobs.update(pipeline)
    # Short HTTP timeouts keep intent leases (timeout-bound) short, so crash tests recover fast.
    http = HttpSettings(connect_timeout=1.0, read_timeout=3.0, backoff_initial=0.05,
                        backoff_max=0.2)
    return Settings(data_dir=data_dir, database_url=database_url, broker_url=broker_url,
                    http=http,
                    openai_api_key=SecretStr("sk-test"), openai_api_base=f"{emulator_url}/v1",
                    pipeline=PipelineSettings(**knobs))


def request_line(custom_id: str, content: str = "hello", *, model: str = "gpt-4o-mini",
                 x_emulator: dict[str, Any] | None = None) -> dict[str, Any]:
    """One chat-completions request line."""
    body: dict[str, Any] = {"model": model,
                            "messages": [{"role": "user", "content": content}]}
    if x_emulator is not None:
        body["x_emulator"] = x_emulator
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """JSONL bytes of the lines."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def upload(svc: Services, data: bytes, filename: str = "input.jsonl") -> str:
    """Store an input file through the service; returns its id."""
    record = file_service.create_file(svc, owner=None, filename=filename, purpose="batch",
                                      stream=io.BytesIO(data))
    return record.id


def wait_for(condition: Callable[[], Any], *, timeout: float = 60.0,
             interval: float = 0.1, message: str = "condition") -> Any:
    """Poll ``condition`` until truthy or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def results_by_custom_id(engine: sa.Engine, batch_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every result row of a batch, grouped by custom_id."""
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT custom_id, ok, status_code, response_body, error_code, attempt "
            "FROM results WHERE batch_id = :b ORDER BY line_no"), {"b": batch_id}).mappings()
        for row in rows:
            out.setdefault(row["custom_id"], []).append(dict(row))
    return out


class InlineDriver:
    """Runs the pipeline in this process: nudges queue up and are run in order, plus ticks.

    For service-level tests only; the real-worker tests go through Celery.
    """

    def __init__(self, settings: Settings) -> None:
        self.queue: deque[tuple[str, str]] = deque()
        self.svc = build_services(settings, nudge=lambda task, oid: self.queue.append((task, oid)))

    def run_until(self, condition: Callable[[], Any], *, timeout: float = 60.0) -> Any:
        """Drain nudges and tick until ``condition`` holds."""
        deadline = time.monotonic() + timeout
        next_tick = 0.0
        while time.monotonic() < deadline:
            while self.queue:
                task, oid = self.queue.popleft()
                run_task(self.svc, task, oid)
            value = condition()
            if value:
                return value
            if time.monotonic() >= next_tick:
                run_tick(self.svc)
                next_tick = time.monotonic() + self.svc.settings.pipeline.tick_seconds
            time.sleep(0.02)
        raise AssertionError(f"pipeline did not get there in {timeout}s")


@contextlib.contextmanager
def fresh_pg_database(postgres_url: str) -> Iterator[str]:
    """A new PostgreSQL database next to the session's one (dropped on exit)."""
    base = postgres_url.rsplit("/", 1)[0]
    name = f"by_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Nudges:
    """Records the nudges services send instead of sending them (tests with no worker)."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, task: str, object_id: str) -> None:
        self.sent.append((task, object_id))


def seed_parts_in_flight(svc: Services, emulator: Any, count: int, *, parts_per_batch: int = 50,
                         requests_per_part: int = 100, provider_status: str = "in_progress"
                         ) -> list[tuple[str, str]]:
    """``count`` parts already at the provider (``submitted``, due now), in batches of
    ``parts_per_batch``, each with its own provider batch created in the in-process
    ``emulator`` (an :class:`~batchyard.emulator.state.Emulator`) with no runner, so it stays
    at ``provider_status`` until told otherwise. Returns (part id, provider batch id) pairs.

    Written straight to the tables: what the pipeline leaves after ``count`` submits.
    """
    from batchyard.emulator import ids as emulator_ids
    from batchyard.emulator.store import BatchEntry

    file_id = upload(svc, jsonl([request_line("seed")]), filename="seed.jsonl")
    deployment = svc.deployments.all()[0].id
    now = time.time()
    batch_rows: list[dict[str, Any]] = []
    part_rows: list[dict[str, Any]] = []
    pairs: list[tuple[str, str]] = []
    for i in range(count):
        if i % parts_per_batch == 0:
            batch_id = f"batch_seed{uuid.uuid4().hex}"
            seq = 0
            batch_rows.append({
                "id": batch_id, "endpoint": "/v1/chat/completions", "input_file_id": file_id,
                "completion_window": "24h", "model": "gpt-4o-mini", "status": "in_progress",
                "created_at": int(now), "in_progress_at": int(now), "stage": "running",
                "due_at": now + 86_400, "cancel_requested": False, "updated_at": now,
                "total": min(parts_per_batch, count - i) * requests_per_part})
        seq += 1
        part_id = f"part_seed{uuid.uuid4().hex}"
        provider_id = emulator_ids.batch_id("openai")
        emulator.store.add_batch(BatchEntry(
            id=provider_id, endpoint="/v1/chat/completions", input_file_id="file-seed",
            completion_window="24h", created_at=int(now), expires_at=int(now) + 86_400,
            metadata={"batchyard_part_id": part_id}, status=provider_status,
            model="gpt-4o-mini", total=requests_per_part))
        part_rows.append({
            "id": part_id, "batch_id": batch_id, "seq": seq, "attempt": 1,
            "deployment": deployment, "status": "submitted",
            "request_count": requests_per_part, "byte_size": 1_000, "estimated_tokens": 100,
            "provider_file_id": "file-seed", "provider_batch_id": provider_id,
            "provider_status": "validating", "next_poll_at": now, "poll_interval": None,
            "created_at": now, "updated_at": now})
        pairs.append((part_id, provider_id))
    from batchyard.db.models import BatchRow, PartRow

    with svc.engine.begin() as conn:
        for start in range(0, len(batch_rows), 1_000):
            conn.execute(sa.insert(BatchRow), batch_rows[start:start + 1_000])
        for start in range(0, len(part_rows), 1_000):
            conn.execute(sa.insert(PartRow), part_rows[start:start + 1_000])
    return pairs

"""/metrics and the dashboard's batch list on a big database: 10,000 batches, 100,000 parts.

Usage: .venv/bin/python benchmarks/ui_bench.py [--batches 10000] [--parts 100000]
       [--rounds 30] [--keep]

Creates a PostgreSQL database for the run (``alembic upgrade head``), fills it with batches in
every status (a tenth of them open, with live parts on three deployments) and parts, then
times, in this process, what one API request does on the server:

- ``GET /metrics``: the whole exposition (process metrics + the pipeline state queries);
- ``GET /ui/fragments/batches``: the list the dashboard polls (50 newest), unfiltered, with a
  status filter, for a virtual key's own batches, and with a metadata search;
- ``GET /ui/batches/{id}``: one batch's detail page (parts, events, failures).

Each figure is the median and p95 of ``--rounds`` requests through the ASGI app (FastAPI's
TestClient: routing, the sign-in cookie check, the queries and the template rendering), after
two warm-up requests. Targets: /metrics < 200 ms, the batch list < 100 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.db import migrate
from batchyard.services.container import build_services

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MASTER = "sk-bench-master"
STATUSES = ["completed"] * 70 + ["failed"] * 8 + ["cancelled"] * 6 + ["expired"] * 2 + [
    "in_progress"] * 10 + ["validating"] * 2 + ["finalizing"] + ["cancelling"]
PART_DONE = ["ingested"] * 9 + ["failed"]
PART_LIVE = ["submitted", "submitted", "ingesting", "pending", "uploading"]
DEPLOYMENTS = ["openai-east", "openai-west", "azure-eu"]
OWNERS = [None, "key_team_a", "key_team_b", "key_team_c"]


def fill(engine: sa.Engine, n_batches: int, n_parts: int) -> str:
    """Insert the rows (multi-row INSERTs); returns one open batch id."""
    now = time.time()
    rng = random.Random(7)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO files (id, filename, purpose, bytes, created_at, status, kind, deleted) "
            "VALUES ('file-bench', 'in.jsonl', 'batch', 1, :t, 'processed', 'input', false)"),
            {"t": int(now)})
        batches = []
        for i in range(n_batches):
            status = rng.choice(STATUSES)
            total = rng.randint(10, 50_000)
            done = status in ("completed", "failed", "cancelled", "expired")
            batches.append({
                "id": f"batch_{uuid.UUID(int=rng.getrandbits(128)).hex}",
                "owner": OWNERS[i % len(OWNERS)], "status": status,
                "created": int(now - (n_batches - i) * 60), "total": total,
                "completed": total - 3 if done else 0, "failed": 3 if done else 0,
                "meta": f'{{"project": "p{i % 97}", "run": "r{i}"}}',
                "cost": rng.randint(0, 10**12) if done else 0})
        conn.execute(sa.text(
            "INSERT INTO batches (id, owner_key_id, endpoint, input_file_id, completion_window, "
            "status, metadata, created_at, total, completed, failed, input_tokens, "
            "output_tokens, cached_tokens, reasoning_tokens, stage, cancel_requested, "
            "updated_at, due_at, cost_pico, priced_requests, unpriced_requests) VALUES "
            "(:id, :owner, '/v1/chat/completions', 'file-bench', '24h', :status, "
            "CAST(:meta AS JSON), :created, :total, :completed, :failed, 0, 0, 0, 0, "
            "'running', false, 0, 0, :cost, :completed, 0)"), batches)
        parts = []
        per_batch = max(1, n_parts // n_batches)
        for b in batches:
            open_batch = b["status"] in ("in_progress", "validating", "finalizing", "cancelling")
            for seq in range(per_batch):
                count = max(1, b["total"] // per_batch)
                status = rng.choice(PART_LIVE if open_batch else PART_DONE)
                parts.append({
                    "id": f"part_{uuid.UUID(int=rng.getrandbits(128)).hex}", "batch": b["id"],
                    "seq": seq + 1, "dep": rng.choice(DEPLOYMENTS), "status": status,
                    "count": count, "done": rng.randint(0, count),
                    "pbid": f"batch_{rng.getrandbits(64):016x}",
                    "created": b["created"] + seq, "tokens": count * 40})
        conn.execute(sa.text(
            "INSERT INTO parts (id, batch_id, seq, attempt, deployment, status, request_count, "
            "byte_size, estimated_tokens, provider_batch_id, side_effect_attempts, "
            "provider_done, created_at, updated_at) VALUES (:id, :batch, :seq, 1, :dep, "
            ":status, :count, 0, :tokens, :pbid, 0, :done, :created, :created)"), parts)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))  # what autovacuum does after a bulk load
    return next(b["id"] for b in batches if b["status"] == "in_progress")


def timed(client: TestClient, url: str, rounds: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``rounds`` GETs (after two warm-ups)."""
    for _ in range(2):
        assert client.get(url).status_code == 200, url
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--parts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    name = f"by_uibench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        run(url, args)
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(url: str, args: argparse.Namespace) -> None:
    migrate.upgrade(url)
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), database_url=url,
                        master_key=SecretStr(MASTER), openai_api_key=SecretStr("sk-x"))
    svc = build_services(settings, nudge=lambda task, oid: None)
    started = time.perf_counter()
    open_id = fill(svc.engine, args.batches, args.parts)
    print(f"filled {args.batches} batches, {args.parts} parts in "
          f"{time.perf_counter() - started:.1f} s")
    app = create_app(settings, services=svc)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        client.post("/ui/login", data={"key": MASTER})
        cases = [
            ("GET /metrics", "/metrics", 200),
            ("batch list, all", "/ui/fragments/batches", 100),
            ("batch list, status=in_progress", "/ui/fragments/batches?status=in_progress", 100),
            ("batch list, search metadata", "/ui/fragments/batches?q=p42", 100),
            ("batch list, search id", f"/ui/fragments/batches?q={open_id}", 100),
            ("batch detail", f"/ui/batches/{open_id}", None),
        ]
        print(f"{'request':34} {'median ms':>10} {'p95 ms':>8} {'target':>8}")
        for label, path, target in cases:
            median, p95 = timed(client, path, args.rounds)
            goal = f"< {target}" if target else ""
            print(f"{label:34} {median:10.1f} {p95:8.1f} {goal:>8}")
    svc.close()


if __name__ == "__main__":
    main()

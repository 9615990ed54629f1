"""End-to-end benchmark: N requests (default 200,000) through a real worker and the emulator.

    .venv/bin/python benchmarks/e2e_bench.py                   # PostgreSQL + Redis
    .venv/bin/python benchmarks/e2e_bench.py --embedded        # SQLite + embedded broker
    .venv/bin/python benchmarks/e2e_bench.py --requests 20000

Starts the emulator at full speed (no artificial delays) on a free port, a fresh PostgreSQL
database and its own Redis queues (or the embedded default), one ``batchyard worker --beat``
process, submits one JSONL of N chat requests (split into parts of 50,000), and waits for
the batch to complete. Prints the wall time, the result rows in SQL and the time per phase
(from the events table).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import sqlalchemy as sa
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import drop_pg, fresh_pg

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.config import PipelineSettings, Settings
from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches, files
from batchyard.services.container import build_services


def make_input(n: int) -> bytes:
    """N chat-completion request lines."""
    out = io.BytesIO()
    for i in range(n):
        out.write(orjson.dumps({"custom_id": f"r-{i}", "method": "POST",
                                "url": "/v1/chat/completions",
                                "body": {"model": "gpt-4o-mini", "max_tokens": 20,
                                         "messages": [{"role": "user",
                                                       "content": f"Say something about {i}"}]}}))
        out.write(b"\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    data = make_input(args.requests)
    emu_cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0)
    dbname = None
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(emu_cfg) as emulator:
        url, broker = None, None
        if not args.embedded:
            url, dbname = fresh_pg()
            broker = "redis://127.0.0.1:6379/0"
        pipeline = PipelineSettings(poll_min_seconds=0.5, poll_max_seconds=2.0, tick_seconds=0.5,
                                    stale_seconds=120.0, queue=f"bench{uuid.uuid4().hex[:6]}")
        settings = Settings(data_dir=Path(tmp), database_url=url, broker_url=broker,
                            openai_api_key=SecretStr("sk-bench"),
                            openai_api_base=f"{emulator.base_url}/v1", pipeline=pipeline)
        migrate.upgrade(settings.effective_database_url)
        svc = build_services(settings)
        worker = start_worker_process(settings_env(settings), concurrency=args.concurrency,
                                      beat=True, log=Path(tmp) / "worker.log")
        try:
            time.sleep(2.0)  # worker start-up is not part of the figure
            start = time.perf_counter()
            record = files.create_file(svc, owner=None, filename="bench.jsonl", purpose="batch",
                                       stream=io.BytesIO(data))
            batch = batches.create_batch(svc, owner=None, input_file_id=record.id,
                                         endpoint="/v1/chat/completions")
            while (current := batches.get_batch(svc, batch.id, owner=None)).status not in (
                    "completed", "failed", "cancelled", "expired"):
                time.sleep(0.2)
            wall = time.perf_counter() - start
            report(svc.engine, batch.id, current, wall, args, len(data), emulator)
        finally:
            stop_process(worker)
            svc.close()
    if dbname:
        drop_pg(dbname)


def report(engine: sa.Engine, batch_id: str, batch: object, wall: float,
           args: argparse.Namespace, size: int, emulator: EmulatorServer) -> None:
    with engine.connect() as conn:
        rows = conn.scalar(sa.text("SELECT count(*) FROM results WHERE batch_id = :b"),
                           {"b": batch_id})
        ok = conn.scalar(sa.text("SELECT count(*) FROM results WHERE batch_id = :b AND ok"),
                         {"b": batch_id})
        events = conn.execute(sa.text(
            "SELECT entity, to_status, min(at), max(at) FROM events WHERE batch_id = :b "
            "GROUP BY entity, to_status ORDER BY min(at)"), {"b": batch_id}).all()
    stats = emulator.emulator.stats()
    setup = "SQLite + embedded broker" if args.embedded else "PostgreSQL + Redis"
    print(f"{setup}: {args.requests:,} requests ({size / 1e6:.1f} MB), "
          f"{stats['batches_created']} provider batches, worker concurrency {args.concurrency}")
    print(f"status {getattr(batch, 'status', '?')}: {rows:,} result rows ({ok:,} ok) "
          f"in {wall:.1f} s wall = {rows / wall:,.0f} requests/s end to end")
    t0 = events[0][2] if events else 0.0
    for entity, status, first, last in events:
        print(f"  {entity:5} -> {status:<11} first at +{first - t0:6.1f} s, last at "
              f"+{last - t0:6.1f} s")


if __name__ == "__main__":
    main()

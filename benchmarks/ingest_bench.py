"""Ingest benchmark: a provider output file of N lines into result rows (PostgreSQL default).

    .venv/bin/python benchmarks/ingest_bench.py                       # 100,000 lines
    .venv/bin/python benchmarks/ingest_bench.py --gigabyte            # a ~1 GB output file
    .venv/bin/python benchmarks/ingest_bench.py --database-url sqlite:////tmp/b.db

It writes an OpenAI-shaped output file, prepares a database (fresh PostgreSQL database on
127.0.0.1 unless --database-url) with one batch, one part and N request rows, then runs the
pipeline's own ingest code (``services.ingest.ingest_stream``: streaming parse, bulk upsert
in batches of ``ingest_batch_rows``) in a separate worker process and prints rows/s and that
process's peak RSS. The provider download itself is benchmarked in upload_200mb.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import sqlalchemy as sa

from batchyard.config import PipelineSettings, Settings
from batchyard.db import migrate
from batchyard.services.container import build_services

BATCH, PART = "batch_bench", "part_bench"


def write_output(path: Path, lines: int, answer_bytes: int) -> int:
    """An output file in the provider's shape; returns its size."""
    filler = "x" * max(0, answer_bytes)
    with path.open("wb") as out:
        for i in range(lines):
            body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": f"answer {i} {filler}"}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}
            out.write(orjson.dumps({"id": f"batch_req_{i}", "custom_id": f"r-{i}",
                                    "response": {"status_code": 200, "request_id": f"req_{i}",
                                                 "body": body}, "error": None}) + b"\n")
    return path.stat().st_size


def prepare_db(url: str, lines: int) -> None:
    """Schema + one batch, one part and the part's request rows (not timed)."""
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO files (id, filename, purpose, bytes, created_at, status, kind, deleted)"
            " VALUES ('file-bench', 'in.jsonl', 'batch', 0, :t, 'processed', 'input', false)"),
            {"t": int(now)})
        conn.execute(sa.text(
            "INSERT INTO batches (id, endpoint, input_file_id, completion_window, status, "
            "created_at, total, completed, failed, input_tokens, output_tokens, cached_tokens,"
            " reasoning_tokens, stage, cancel_requested, updated_at, due_at) VALUES "
            "(:b, '/v1/chat/completions', 'file-bench', '24h', 'in_progress', :t, :n, 0, 0, "
            "0, 0, 0, 0, 'running', false, :t, :t)"), {"b": BATCH, "t": int(now), "n": lines})
        conn.execute(sa.text(
            "INSERT INTO parts (id, batch_id, seq, attempt, deployment, status, request_count,"
            " byte_size, estimated_tokens, side_effect_attempts, provider_done, created_at, "
            "updated_at) VALUES (:p, :b, 1, 1, 'openai', 'ingesting', :n, 0, 0, 1, 0, :t, :t)"),
            {"p": PART, "b": BATCH, "n": lines, "t": now})
        for start in range(0, lines, 10_000):
            conn.execute(sa.text(
                "INSERT INTO requests (batch_id, custom_id, line_no, body, part_id, attempt, "
                "state) VALUES (:b, :c, :l, '{}', :p, 1, 'submitted')"),
                [{"b": BATCH, "c": f"r-{i}", "l": i + 1, "p": PART}
                 for i in range(start, min(lines, start + 10_000))])
    engine.dispose()


def child(url: str, output: Path, batch_rows: int) -> None:
    """The measured worker: the pipeline's ingest over the local output file."""
    from batchyard.db.models import BatchRow, PartRow
    from batchyard.services.ingest import ingest_stream

    settings = Settings(database_url=url, data_dir=Path(tempfile.gettempdir()),
                        pipeline=PipelineSettings(ingest_batch_rows=batch_rows))
    svc = build_services(settings, nudge=lambda task, oid: None)
    with svc.sessions() as session:
        part, batch = session.get(PartRow, PART), session.get(BatchRow, BATCH)
    assert part is not None and batch is not None
    warm = getattr(getattr(svc, "prices", None), "warm", None)
    if warm is not None:
        warm(wait=True)  # as a worker does when it starts (the price table is imported once)
    pg_before = _backend_cpu(svc)
    start, cpu = time.perf_counter(), time.process_time()
    with output.open("rb") as stream:
        rows = ingest_stream(svc, part, batch, stream)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    pg_after = _backend_cpu(svc)
    pg_cpu = (None if pg_before is None or pg_after is None else
              sum(t - pg_before.get(pid, 0.0) for pid, t in pg_after.items()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    totals = _time_totals(svc)
    svc.close()
    print(orjson.dumps({"rows": rows, "seconds": seconds, "cpu": cpu, "totals": totals,
                        "peak_rss_mb": peak_mb, "pg_cpu": pg_cpu,
                        "pg_pids": sorted(pg_after or ())}).decode())


def _backend_cpu(svc: object) -> dict[int, float] | None:
    """CPU seconds (user + system) so far of every PostgreSQL backend connected to the
    bench database (read from /proc: the server runs on this host), by pid."""
    if svc.engine.dialect.name != "postgresql":  # type: ignore[attr-defined]
        return None
    with svc.engine.connect() as conn:  # type: ignore[attr-defined]
        pids = conn.scalars(sa.text("SELECT pid FROM pg_stat_activity "
                                    "WHERE datname = current_database()")).all()
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _time_totals(svc: object) -> float | None:
    """Seconds of the once-per-part step that sums the batch's cost and tokens (if any)."""
    try:
        from batchyard.db.costs import refresh_batch_totals
    except ImportError:
        return None
    start = time.perf_counter()
    with svc.sessions.begin() as session:  # type: ignore[attr-defined]
        refresh_batch_totals(session, BATCH)
    return time.perf_counter() - start


def fresh_pg() -> tuple[str, str]:
    name = f"by_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1/{name}", name


def drop_pg(name: str) -> None:
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--answer-bytes", type=int, default=200)
    parser.add_argument("--gigabyte", action="store_true", help="~1 GB: 100k x ~10 KB lines")
    parser.add_argument("--batch-rows", type=int, default=2_000)
    parser.add_argument("--database-url")
    parser.add_argument("--child", nargs=2, metavar=("URL", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.batch_rows)
        return
    if args.gigabyte:
        args.answer_bytes = 10_300
    url, dbname = (args.database_url, None) if args.database_url else fresh_pg()
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "output.jsonl"
        size = write_output(output, args.lines, args.answer_bytes)
        prepare_db(url, args.lines)
        done = subprocess.run([sys.executable, __file__, "--batch-rows", str(args.batch_rows),
                               "--child", url, str(output)], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        figures = orjson.loads(done.stdout.strip().splitlines()[-1])
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        stored = conn.scalar(sa.text("SELECT count(*) FROM results"))
    engine.dispose()
    if dbname:
        drop_pg(dbname)
    print(f"database: {url.split('://')[0]}; output file: {args.lines:,} lines, "
          f"{size / 1e6:,.1f} MB; ingest_batch_rows={args.batch_rows}")
    print(f"ingested {figures['rows']:,} rows ({stored:,} in SQL) in {figures['seconds']:.2f} s"
          f" = {figures['rows'] / figures['seconds']:,.0f} rows/s, "
          f"{size / 1e6 / figures['seconds']:,.1f} MB/s; "
          f"worker peak RSS {figures['peak_rss_mb']:.0f} MB; worker CPU {figures['cpu']:.2f} s")
    if figures.get("pg_cpu") is not None:
        print(f"PostgreSQL backends' CPU during the ingest: {figures['pg_cpu']:.2f} s")
    if figures.get("totals") is not None:
        print(f"then the batch's cost and token sums over those rows: {figures['totals']:.2f} s "
              "(once per ingested part)")


if __name__ == "__main__":
    main()

"""Prepare benchmark: the pipeline's own ``services.prepare`` over a ~200 MB input file.

    .venv/bin/python benchmarks/prepare_bench.py                        # PostgreSQL
    .venv/bin/python benchmarks/prepare_bench.py --database sqlite
    .venv/bin/python benchmarks/prepare_bench.py --part-max-requests 1000000   # one 200 MB part

It writes a JSONL of chat requests (``--mb`` MB of lines of about ``--line-bytes`` bytes),
stores it through the files service and creates a batch (not timed), then runs
``prepare_batch`` (validate the whole file, then split it into parts, each part's request rows
committed in its own transaction and nudged to ``submit`` right after) in a separate process
and prints lines/s, MB/s, when the first ``submit`` nudge was sent (what a worker could start
uploading from), and that process's memory: RSS before the call (imports, engine) and the
peak during it (VmHWM, reset just before the call), so the figure is what prepare itself adds.
Run it with ``PYTHONPATH=<another checkout>/src`` to time that checkout's prepare.
"""

from __future__ import annotations

import argparse
import os
import random
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
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from batchyard.services.container import Services, build_services

_ADMIN = "postgresql+psycopg://postgres@127.0.0.1/postgres"
WORDS = ("the quick brown fox jumps over a lazy dog while batch requests wait in line for "
         "their turn at the model summarise translate classify extract entities").split()


def write_input(path: Path, megabytes: float, line_bytes: int, seed: int = 7) -> int:
    """Chat-completion request lines up to ``megabytes``; returns the line count."""
    rng = random.Random(seed)
    system = "You are a careful assistant. Answer in one short paragraph."
    words = max(1, (line_bytes - 260) // 6)
    limit, size, n = int(megabytes * 1e6), 0, 0
    with path.open("wb") as out:
        while size < limit:
            question = " ".join(rng.choices(WORDS, k=rng.randint(words // 2, words * 3 // 2)))
            line = orjson.dumps({
                "custom_id": f"request-{n}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": 256, "temperature": 0.2,
                         "messages": [{"role": "system", "content": system},
                                      {"role": "user", "content": question}]}}) + b"\n"
            out.write(line)
            size += len(line)
            n += 1
    return n


def settings_for(url: str, data_dir: Path, args: argparse.Namespace) -> Settings:
    return Settings(database_url=url, data_dir=data_dir,
                    pipeline=PipelineSettings(part_max_requests=args.part_max_requests,
                                              part_max_bytes=args.part_max_mb * 1024 * 1024))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(url: str, data_dir: Path, batch_id: str, args: argparse.Namespace) -> None:
    """The measured worker: one prepare_batch call."""
    from batchyard.services.prepare import prepare_batch

    first_submit: list[float] = []

    def nudge(task: str, _object_id: str) -> None:
        if task == "submit" and not first_submit:
            first_submit.append(time.perf_counter())

    svc: Services = build_services(settings_for(url, data_dir, args), nudge=nudge)
    with svc.engine.connect() as conn:  # open the pool's connection before measuring
        conn.execute(sa.text("SELECT 1"))
    before_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    parts = prepare_batch(svc, batch_id)
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    svc.close()
    print(orjson.dumps({"parts": len(parts), "seconds": seconds,
                        "first_submit": (first_submit or [start])[0] - start, "rss_before_mb":
                        before_kb / 1024, "peak_rss_mb": peak_kb / 1024}).decode())


def fresh_pg() -> tuple[str, str]:
    name = f"by_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1/{name}", name


def drop_pg(name: str) -> None:
    admin = sa.create_engine(_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def setup(url: str, data_dir: Path, args: argparse.Namespace) -> tuple[str, int, int]:
    """Schema, the stored input file and a batch over it: (batch id, lines, bytes)."""
    migrate.upgrade(url)
    source = data_dir / "input.jsonl"
    lines = write_input(source, args.mb, args.line_bytes)
    svc = build_services(settings_for(url, data_dir, args), nudge=lambda t, o: None)
    with source.open("rb") as stream:
        record = file_service.create_file(svc, owner=None, filename="input.jsonl",
                                          purpose="batch", stream=stream, max_bytes=1 << 40)
    batch = batch_service.create_batch(svc, owner=None, input_file_id=record.id,
                                       endpoint="/v1/chat/completions")
    svc.close()
    size = source.stat().st_size
    source.unlink()
    return batch.id, lines, size


def counts(url: str, batch_id: str) -> tuple[str, int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        status = conn.scalar(sa.text("SELECT status FROM batches WHERE id = :b"),
                             {"b": batch_id})
        requests = conn.scalar(sa.text("SELECT count(*) FROM requests"))
        parts = conn.scalar(sa.text("SELECT count(*) FROM parts"))
    engine.dispose()
    return str(status), int(requests or 0), int(parts or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--mb", type=float, default=200.0, help="input size in MB")
    parser.add_argument("--line-bytes", type=int, default=800)
    parser.add_argument("--part-max-requests", type=int, default=50_000)
    parser.add_argument("--part-max-mb", type=int, default=200)
    parser.add_argument("--child", nargs=3, metavar=("URL", "DIR", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.child[2], args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url, dbname = ((f"sqlite:///{data_dir / 'bench.db'}", None)
                       if args.database == "sqlite" else fresh_pg())
        try:
            batch_id, lines, size = setup(url, data_dir, args)
            done = subprocess.run(
                [sys.executable, __file__, "--part-max-requests", str(args.part_max_requests),
                 "--part-max-mb", str(args.part_max_mb), "--child", url, tmp, batch_id],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"})
            figures = orjson.loads(done.stdout.strip().splitlines()[-1])
            status, stored, parts = counts(url, batch_id)
        finally:
            if dbname:
                drop_pg(dbname)
    secs = figures["seconds"]
    print(f"database: {args.database}; input: {lines:,} lines, {size / 1e6:,.1f} MB "
          f"({size / lines:,.0f} B/line); parts of <= {args.part_max_requests:,} requests / "
          f"{args.part_max_mb} MiB")
    print(f"prepare: {secs:.2f} s = {lines / secs:,.0f} lines/s, {size / 1e6 / secs:,.1f} MB/s;"
          f" batch {status}, {parts} parts, {stored:,} request rows; first submit nudge at "
          f"{figures['first_submit']:.2f} s")
    print(f"worker RSS before prepare {figures['rss_before_mb']:.0f} MB, peak during "
          f"{figures['peak_rss_mb']:.0f} MB "
          f"(+{figures['peak_rss_mb'] - figures['rss_before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()

"""CPU of the GET /v1/batches/{id} path in one process: one point read, the Batch object, JSON.

    .venv/bin/python benchmarks/get_batch_cpu.py [--reads 20000]

A migrated SQLite database in a temp dir with one batch; then ``read_batch`` (the single
SELECT the API's fast path runs), ``batch_object`` and ``orjson.dumps`` over and over. It
measures what the API process spends per GET besides the HTTP server, so two source trees can
be compared on a busy machine (``PYTHONPATH=<tree>/src`` picks the tree).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson
import sqlalchemy as sa
from batchyard.db.reads import read_batch

from batchyard.api.wire import batch_object
from batchyard.db import migrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'b.db'}"
        migrate.upgrade(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO files (id, filename, purpose, bytes, created_at, status, kind, "
                "deleted) VALUES ('file-1', 'in.jsonl', 'batch', 0, 1, 'processed', 'input', 0)"))
            conn.execute(sa.text(
                "INSERT INTO batches (id, endpoint, input_file_id, completion_window, status, "
                "created_at, total, completed, failed, input_tokens, output_tokens, "
                "cached_tokens, reasoning_tokens, stage, cancel_requested, updated_at, due_at) "
                "VALUES ('batch_1', '/v1/chat/completions', 'file-1', '24h', 'in_progress', 1, "
                "100, 40, 2, 1200, 3400, 0, 0, 'running', 0, 1, 1)"))
        for _ in range(200):  # warm up
            orjson.dumps(batch_object(read_batch(engine, "batch_1")))
        start = time.process_time()
        for _ in range(args.reads):
            orjson.dumps(batch_object(read_batch(engine, "batch_1")))
        cpu = time.process_time() - start
        engine.dispose()
    print(f"{args.reads:,} reads: {cpu:.2f} s CPU = {cpu / args.reads * 1e6:.0f} us per GET")


if __name__ == "__main__":
    main()

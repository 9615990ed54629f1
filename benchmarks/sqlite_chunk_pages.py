"""SQLite page size: 200 MB of 1 MiB chunk rows, and small create-like transactions.

Usage: .venv/bin/python benchmarks/sqlite_chunk_pages.py FILE [--rounds 3] [--small 3000]

Why the database store keeps its SQLite chunks in a file of their own (``batchyard-files.db``,
64 KiB pages) and the main database keeps SQLite's 4 KiB default. For each page size, in a
fresh WAL database (``synchronous=NORMAL``, as ``db/engine.py`` sets it), it prints:

- the time and CPU to insert FILE as 1 MiB rows in one transaction (autocheckpoint off, as the
  store does), then the time of the checkpoint that copies them into the database file;
- the mean time of ``--small`` transactions that each insert a batch-like row and an event row
  (two tables, two indexes), then of as many single-row updates: what the API's creates and
  the pipeline's status moves look like to SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

PAGE_SIZES = (4096, 16384, 65536)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connect(path: Path, page: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def chunks(root: Path, page: int, data: bytes, rounds: int) -> None:
    conn = connect(root / f"chunks{page}.db", page)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE file_chunks (storage_key VARCHAR(200) NOT NULL, seq INTEGER "
                 "NOT NULL, data BLOB NOT NULL, PRIMARY KEY (storage_key, seq))")
    view = memoryview(data)
    for round_no in range(rounds):
        cpu0, t0 = cpu(), time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for seq, start in enumerate(range(0, len(data), 1 << 20)):
            conn.execute("INSERT INTO file_chunks VALUES (?, ?, ?)",
                         (f"k{round_no}", seq, view[start:start + (1 << 20)]))
        conn.execute("COMMIT")
        t1, cpu1 = time.perf_counter(), cpu()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        t2 = time.perf_counter()
        print(f"page {page:6}: {len(data) / 1e6:.0f} MB as 1 MiB rows: insert {t1 - t0:.3f} s "
              f"(CPU {cpu1 - cpu0:.3f} s), checkpoint {t2 - t1:.3f} s  "
              f"(load {os.getloadavg()[0]:.1f})")
    conn.close()


def small(root: Path, page: int, count: int, run: int) -> None:
    conn = connect(root / f"small{page}-{run}.db", page)
    conn.execute("CREATE TABLE b (id TEXT PRIMARY KEY, status TEXT, created INT, meta TEXT)")
    conn.execute("CREATE INDEX b_status ON b (status, created)")
    conn.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, batch TEXT, kind TEXT, at INT)")
    conn.execute("CREATE INDEX e_batch ON e (batch)")
    meta = json.dumps({"note": "y" * 300})
    t0 = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO b VALUES (?, ?, ?, ?)",
                     (f"batch_{os.urandom(8).hex()}", "validating", i, meta))
        conn.execute("INSERT INTO e (batch, kind, at) VALUES (?, ?, ?)",
                     (f"batch_{i}", "created", i))
        conn.execute("COMMIT")
    t1 = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE b SET status = 'in_progress' WHERE created = ?", (i,))
        conn.execute("COMMIT")
    t2 = time.perf_counter()
    print(f"page {page:6}: {count} create-like transactions {1e6 * (t1 - t0) / count:4.0f} us "
          f"each, single-row updates {1e6 * (t2 - t1) / count:4.0f} us each  "
          f"(load {os.getloadavg()[0]:.1f})")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=3000)
    args = parser.parse_args()
    data = args.file.read_bytes()
    root = Path(tempfile.mkdtemp(prefix="batchyard-pages-"))
    try:
        for page in PAGE_SIZES:
            chunks(root, page, data, args.rounds)
        for run in range(2):
            for page in PAGE_SIZES:
                small(root, page, args.small, run)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

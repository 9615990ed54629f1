"""How fast PostgreSQL itself takes 200 MB of upload bytes, without batchyard: the floor.

Usage: .venv/bin/python benchmarks/pg_chunk_floor.py FILE [--rounds 3] [--layouts a,b,...]

Creates a scratch database, then for each round and each layout (in turn, so every layout
sees the same load) stores FILE as chunk rows ``(storage_key, seq, data)`` in one transaction
from one psycopg connection and prints the wall time and the backend's CPU (from ``/proc``,
the connection's own backend; the WAL writer and checkpointer are not counted). The bytes are
read into memory first, so no disk read or hashing is timed: only the database's work.

Layouts:
- ``lz4_1m``: 1 MiB rows, ``data`` lz4-compressed out of line (TOAST; what migration 0400 set)
- ``ext_1m``: 1 MiB rows, uncompressed out of line (``STORAGE EXTERNAL``)
- ``plain_8k``: rows of 8,000 bytes kept in the heap page (``STORAGE PLAIN``, no TOAST)
- ``*_copy``: the same rows sent by ``COPY ... FROM STDIN (FORMAT BINARY)``, not inserts
- ``*_async``: the chunk transaction commits with ``synchronous_commit = off``
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

import psutil
import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

LAYOUTS = {
    # name: (storage clause, chunk bytes, copy?, async commit?)
    "lz4_1m": ("SET COMPRESSION lz4", 1 << 20, False, False),
    "ext_1m": ("SET STORAGE EXTERNAL", 1 << 20, False, False),
    "plain_8k": ("SET STORAGE PLAIN", 8000, False, False),
    "plain_8k_copy": ("SET STORAGE PLAIN", 8000, True, False),
    "plain_8k_copy_async": ("SET STORAGE PLAIN", 8000, True, True),
    "ext_1m_copy": ("SET STORAGE EXTERNAL", 1 << 20, True, False),
    "lz4_1m_async": ("SET COMPRESSION lz4", 1 << 20, False, True),
}


def backend_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def store(conn: psycopg.Connection, table: str, data: bytes, chunk: int, copy: bool,
          asynchronous: bool) -> None:
    key = f"input/{uuid.uuid4().hex}"
    view = memoryview(data)
    with conn.transaction():
        if asynchronous:
            conn.execute("SET LOCAL synchronous_commit = off")
        if copy:
            with conn.cursor() as cur, cur.copy(
                    f"COPY {table} (storage_key, seq, data) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["varchar", "int4", "bytea"])
                for seq, start in enumerate(range(0, len(data), chunk)):
                    cp.write_row((key, seq, view[start:start + chunk]))
        else:
            with conn.pipeline(), conn.cursor() as cur:
                for seq, start in enumerate(range(0, len(data), chunk)):
                    cur.execute(f"INSERT INTO {table} (storage_key, seq, data) "
                                "VALUES (%s, %s, %b)", (key, seq, view[start:start + chunk]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    data = args.file.read_bytes()
    name = f"batchyard_floor_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            for layout in layouts:
                clause = LAYOUTS[layout][0]
                conn.execute(f"CREATE TABLE t_{layout} (storage_key varchar(200) NOT NULL, "
                             "seq integer NOT NULL, data bytea NOT NULL, "
                             f"PRIMARY KEY (storage_key, seq))")
                conn.execute(f"ALTER TABLE t_{layout} ALTER COLUMN data {clause}")
            conn.commit()
            pid = conn.info.backend_pid
            print(f"{len(data) / 1e6:.1f} MB, load average {os.getloadavg()[0]:.2f}")
            for round_no in range(args.rounds):
                for layout in layouts:
                    _, chunk, copy, asynchronous = LAYOUTS[layout]
                    cpu, t0 = backend_cpu(pid), time.perf_counter()
                    store(conn, f"t_{layout}", data, chunk, copy, asynchronous)
                    wall, cpu = time.perf_counter() - t0, backend_cpu(pid) - cpu
                    print(f"round {round_no + 1} {layout:<20} {wall:5.2f} s wall, "
                          f"backend CPU {cpu:5.2f} s  (load {os.getloadavg()[0]:.2f})")
                    conn.execute(f"TRUNCATE t_{layout}")
                    conn.commit()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

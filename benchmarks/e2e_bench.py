"""End-to-end benchmark: N requests (default 200,000) through a real worker and the emulator.

    .venv/bin/python benchmarks/e2e_bench.py                   # PostgreSQL + Redis
    .venv/bin/python benchmarks/e2e_bench.py --embedded        # SQLite + embedded broker
    .venv/bin/python benchmarks/e2e_bench.py --requests 20000

Starts the emulator at full speed (no artificial delays) on a free port, a fresh PostgreSQL
database and its own Redis queues (or the embedded default), ``--workers`` worker processes
(default 2, one per core; the first runs beat; ``--concurrency`` threads each), submits one
JSONL of N chat requests (split into parts of 50,000), and waits for the batch to complete.
Prints the wall time, the result rows in SQL, the time per phase (from the events table),
the load average and the worker processes' CPU time.

Configuration used (settings any deployment may set, not benchmark-only code paths): poll
interval 0.5-2 s and beat tick 0.5 s, and ``first_poll_seconds`` 1 s (``--first-poll``;
default 5 s), i.e. ``BATCHYARD_PIPELINE__FIRST_POLL_SECONDS=1`` and friends.

The emulator runs in a process of its own (``batchyard emulator``, as a provider is another
machine), so its CPU seconds are reported apart from batchyard's own (workers, this process's
upload/create/status calls, PostgreSQL). ``--emulator thread`` runs it inside this process
instead (as before; its CPU is then in this process's figure). ``--running-batches N`` makes
the emulator work on at most N batches at once, in arrival order (default: all at once).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emulator_bench import make_input
from ingest_bench import drop_pg, fresh_pg

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.config import PipelineSettings, Settings
from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches, files
from batchyard.services.container import build_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--first-poll", type=float, default=1.0,
                        help="seconds to a new provider batch's first poll")
    parser.add_argument("--emulator", choices=("process", "thread"), default="process",
                        help="the emulator in its own process, or in this one")
    parser.add_argument("--running-batches", type=int, default=None,
                        help="the emulator works on at most N batches at once")
    args = parser.parse_args()
    data = make_input(args.requests)
    dbname = None
    with tempfile.TemporaryDirectory() as tmp, emulator_at(args) as emulator:
        url, broker = None, None
        if not args.embedded:
            url, dbname = fresh_pg()
            broker = "redis://127.0.0.1:6379/0"
        pipeline = PipelineSettings(poll_min_seconds=0.5, poll_max_seconds=2.0, tick_seconds=0.5,
                                    stale_seconds=120.0, first_poll_seconds=args.first_poll,
                                    queue=f"bench{uuid.uuid4().hex[:6]}")
        settings = Settings(data_dir=Path(tmp), database_url=url, broker_url=broker,
                            openai_api_key=SecretStr("sk-bench"),
                            openai_api_base=f"{emulator.base_url}/v1", pipeline=pipeline)
        migrate.upgrade(settings.effective_database_url)
        svc = build_services(settings)
        workers = [start_worker_process(settings_env(settings), concurrency=args.concurrency,
                                        beat=n == 0, log=Path(tmp) / f"worker{n}.log")
                   for n in range(max(1, args.workers))]
        try:
            time.sleep(3.0)  # worker start-up is not part of the figure
            load, cpu0 = os.getloadavg()[0], [_cpu_seconds(w.pid) for w in workers]
            own0, pg0, emu0 = time.process_time(), _postgres_cpu(), emulator.cpu()
            start = time.perf_counter()
            record = files.create_file(svc, owner=None, filename="bench.jsonl", purpose="batch",
                                       stream=io.BytesIO(data))
            batch = batches.create_batch(svc, owner=None, input_file_id=record.id,
                                         endpoint="/v1/chat/completions")
            while (current := batches.get_batch(svc, batch.id, owner=None)).status not in (
                    "completed", "failed", "cancelled", "expired"):
                time.sleep(0.2)
            wall = time.perf_counter() - start
            cpu = [_cpu_seconds(w.pid) - c for w, c in zip(workers, cpu0, strict=True)]
            own, pg = time.process_time() - own0, _postgres_cpu() - pg0
            emu_cpu = emulator.cpu() - emu0
            report(svc.engine, batch.id, current, wall, args, len(data), emulator.stats())
            print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
                  f"CPU seconds: workers {' + '.join(f'{c:.1f}' for c in cpu)}, this process "
                  f"({'emulator, ' if emulator.process is None else ''}upload, create) "
                  f"{own:.1f}, every PostgreSQL server process (other databases' work "
                  f"included) {pg:.1f}; wall x 2 cores = {2 * wall:.1f}")
            if emulator.process is not None:
                ours = sum(cpu) + own + pg
                print(f"CPU seconds: batchyard (workers + this process + PostgreSQL) "
                      f"{ours:.1f}, the emulator process {emu_cpu:.1f}")
        finally:
            for worker in workers:
                stop_process(worker)
            svc.close()
    if dbname:
        drop_pg(dbname)


class RunningEmulator:
    """The emulator the benchmark talks to: its base URL, CPU seconds and stats."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes] | None,
                 server: EmulatorServer | None) -> None:
        self.base_url, self.process, self.server = base_url, process, server

    def cpu(self) -> float:
        """The emulator process's CPU seconds (0 when it runs in this process)."""
        return _cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def stats(self) -> dict[str, Any]:
        if self.server is not None:
            return self.server.emulator.stats()
        answer = httpx.get(f"{self.base_url}/_emulator/stats", timeout=30)
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats


@contextmanager
def emulator_at(args: argparse.Namespace) -> Iterator[RunningEmulator]:
    """The emulator at full speed, in a ``batchyard emulator`` process or in this one."""
    knobs: dict[str, Any] = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}
    if args.running_batches is not None:
        knobs["running_batches"] = args.running_batches
    if args.emulator == "thread":
        with EmulatorServer(EmulatorConfig(**knobs)) as server:
            yield RunningEmulator(server.base_url, None, server)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "batchyard", "emulator", "--port", str(port)]
    for name, value in knobs.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/_emulator/stats", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the emulator process did not start") from None
                time.sleep(0.1)
        yield RunningEmulator(base_url, process, None)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds of every process named postgres on this machine (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            total += _cpu_seconds(int(stat.parent.name))
    return total


def report(engine: sa.Engine, batch_id: str, batch: object, wall: float,
           args: argparse.Namespace, size: int, stats: dict[str, Any]) -> None:
    with engine.connect() as conn:
        rows = conn.scalar(sa.text("SELECT count(*) FROM results WHERE batch_id = :b"),
                           {"b": batch_id})
        ok = conn.scalar(sa.text("SELECT count(*) FROM results WHERE batch_id = :b AND ok"),
                         {"b": batch_id})
        events = conn.execute(sa.text(
            "SELECT entity, to_status, min(at), max(at) FROM events WHERE batch_id = :b "
            "GROUP BY entity, to_status ORDER BY min(at)"), {"b": batch_id}).all()
    setup = "SQLite + embedded broker" if args.embedded else "PostgreSQL + Redis"
    print(f"{setup}: {args.requests:,} requests ({size / 1e6:.1f} MB), "
          f"{stats['batches_created']} provider batches, worker concurrency {args.concurrency}, "
          f"emulator in {'its own process' if args.emulator == 'process' else 'this process'}"
          + (f", running batches {args.running_batches}" if args.running_batches else ""))
    print(f"status {getattr(batch, 'status', '?')}: {rows:,} result rows ({ok:,} ok) "
          f"in {wall:.1f} s wall = {rows / wall:,.0f} requests/s end to end")
    t0 = events[0][2] if events else 0.0
    at: dict[tuple[str, str], tuple[float, float]] = {}
    for entity, status, first, last in events:
        at[(entity, status)] = (first - t0, last - t0)
        print(f"  {entity:5} -> {status:<11} first at +{first - t0:6.1f} s, last at "
              f"+{last - t0:6.1f} s")
    print("phases: " + "; ".join(_phases(at)))


def _phases(at: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    """Per-phase spans from the events: (start event, end event) first/last times."""
    def span(name: str, start: tuple[str, str, int], end: tuple[str, str, int]) -> str | None:
        if (start[0], start[1]) not in at or (end[0], end[1]) not in at:
            return None
        a, b = at[(start[0], start[1])][start[2]], at[(end[0], end[1])][end[2]]
        return f"{name} {b - a:.1f} s"
    spans = [
        span("prepare (validate + split)", ("batch", "validating", 0),
             ("batch", "in_progress", 0)),
        span("upload + create (split done to last submitted)", ("batch", "in_progress", 0),
             ("part", "submitted", 1)),
        span("provider (last submitted to last ingest start)", ("part", "submitted", 1),
             ("part", "ingesting", 1)),
        span("ingest (first ingest start to last ingested)", ("part", "ingesting", 0),
             ("part", "ingested", 1)),
        span("finalize", ("part", "ingested", 1), ("batch", "completed", 1)),
    ]
    return [s for s in spans if s]


if __name__ == "__main__":
    main()

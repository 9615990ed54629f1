"""Polling scale-out: one sweep over N parts in flight with 1, 2, 4 worker processes.

PostgreSQL + Redis + the emulator (in this process, on a real port, at full speed). The
parts are written straight to the tables as ``submitted``, each with its own provider batch
in the emulator (created without a runner, so it stays ``in_progress``). With
``poll_min_seconds`` of an hour, a sweep polls every part exactly once; it starts when every
part is made due at once and ends when every part's poll is recorded.

Prints per run: sweep time, polls/s, CPU ms per poll (worker processes from /proc, and the
PostgreSQL backends serving this database), and the emulator-alone retrieve rate measured in
the same run (a keep-alive client, the same number of threads as the workers' HTTP
concurrency) with the ratio polls/s : emulator-alone req/s.

    .venv/bin/python benchmarks/poll_bench.py --parts 10000 --workers 1,2,4 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.e2e.helpers

from ingest_bench import drop_pg, fresh_pg
from tests.e2e.helpers import seed_parts_in_flight

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.config import PipelineSettings, Settings
from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services.container import build_services
from batchyard.worker.app import create_celery

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker's embedded beat is a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _backends(engine: sa.Engine, dbname: str) -> list[int]:
    with engine.connect() as conn:
        return [int(pid) for (pid,) in conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND "
                    "pid <> pg_backend_pid()"), {"d": dbname})]


_ALONE = """
import sys, threading, time, httpx
base, seconds, threads, ids = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
done = [0] * threads
stop = time.monotonic() + seconds
def run(slot):
    with httpx.Client(base_url=base + "/v1", headers={"Authorization": "Bearer sk"}) as c:
        i = slot
        while time.monotonic() < stop:
            c.get("/batches/" + ids[i % len(ids)]).raise_for_status()
            done[slot] += 1
            i += threads
pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
start = time.monotonic()
[t.start() for t in pool]
[t.join() for t in pool]
print(sum(done) / (time.monotonic() - start))
"""


def emulator_alone(base_url: str, provider_ids: list[str], threads: int,
                   seconds: float = 3.0) -> float:
    """Retrieves per second the emulator serves to keep-alive httpx clients on ``threads``
    threads of another process (the provider-direct reference: no batchyard in between)."""
    out = subprocess.run([sys.executable, "-c", _ALONE, base_url, str(seconds), str(threads),
                          *provider_ids[:500]], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def wait_ready(settings: Settings, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` workers answer a remote-control ping."""
    app = create_celery(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= count:
            return
    raise SystemExit(f"only some of {count} workers came up in {timeout}s")


def sweep(settings: Settings, engine: sa.Engine, dbname: str, parts: int, workers: int,
          concurrency: int, log: Path) -> dict[str, float]:
    """One sweep over every part with ``workers`` processes (the first runs the beat)."""
    with engine.begin() as conn:  # nothing due while the workers start
        conn.execute(sa.text("UPDATE parts SET next_poll_at = :t, poll_interval = NULL, "
                             "provider_status = 'validating'"), {"t": time.time() + 86_400})
    procs = [start_worker_process(settings_env(settings), concurrency=concurrency,
                                  beat=(n == 0), loglevel="WARNING", log=log)
             for n in range(workers)]
    try:
        wait_ready(settings, workers)
        time.sleep(1.0)
        pids = [pid for proc in procs for pid in _tree(proc.pid)]
        backends = _backends(engine, dbname)
        cpu0 = {pid: _cpu_seconds(pid) for pid in pids}
        pg0 = {pid: _cpu_seconds(pid) for pid in backends}
        me0 = time.process_time()
        start = time.monotonic()
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE parts SET next_poll_at = :t"), {"t": time.time()})
        while True:
            time.sleep(0.1)
            with engine.connect() as conn:
                left = conn.execute(sa.text(
                    "SELECT count(*) FROM parts WHERE poll_interval IS NULL")).scalar_one()
            if left == 0:
                break
            if time.monotonic() - start > 600:
                raise SystemExit(f"sweep not done after 600 s ({left} parts left)")
        elapsed = time.monotonic() - start
        worker_cpu = sum(_cpu_seconds(pid) - cpu0.get(pid, 0.0)
                         for proc in procs for pid in _tree(proc.pid))
        pg_cpu = sum(_cpu_seconds(pid) - pg0.get(pid, 0.0)
                     for pid in set(backends) | set(_backends(engine, dbname)))
        bench_cpu = time.process_time() - me0
    finally:
        for proc in procs:
            stop_process(proc)
    text = log.read_text(errors="replace") if log.exists() else ""
    problems = [line[:300] for line in text.splitlines()
                if "raised unexpected" in line or "did not answer" in line or "crashed" in line]
    if problems:
        print(f"  {len(problems)} problem lines in {log}, first: {problems[0]}", flush=True)
    return {"seconds": elapsed, "polls_s": parts / elapsed,
            "worker_ms": worker_cpu * 1000 / parts, "pg_ms": pg_cpu * 1000 / parts,
            "emulator_ms": bench_cpu * 1000 / parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--poll-concurrency", type=int, default=16)
    parser.add_argument("--claim-size", type=int, default=100)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--lease", type=float, default=300.0, help="stale_seconds")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs")
    args = parser.parse_args()

    url, dbname = fresh_pg()
    tmp = Path(tempfile.mkdtemp(prefix="poll-bench-"))
    server = EmulatorServer(EmulatorConfig(flavor="openai")).start()
    try:
        settings = Settings(
            data_dir=tmp / "data", database_url=url, broker_url=args.redis,
            openai_api_key=SecretStr("sk-bench"), openai_api_base=f"{server.base_url}/v1",
            pipeline=PipelineSettings(
                poll_min_seconds=3600, poll_max_seconds=3600, first_poll_seconds=3600,
                stale_seconds=args.lease, tick_seconds=args.tick, poll_claim_size=args.claim_size,
                poll_concurrency=args.poll_concurrency, queue=f"pollbench{os.getpid()}"))
        migrate.upgrade(url)
        svc = build_services(settings)
        t0 = time.monotonic()
        pairs = seed_parts_in_flight(svc, server.emulator, args.parts, parts_per_batch=100)
        print(f"seeded {args.parts} parts in flight in {time.monotonic() - t0:.1f} s; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        ids = [provider_id for _, provider_id in pairs]
        print("workers | sweep s | polls/s | worker CPU ms/poll | PG CPU ms/poll | "
              "emulator+bench CPU ms/poll | emulator alone req/s | ratio | load (1 min)")
        for _ in range(args.rounds):
            for workers in [int(n) for n in args.workers.split(",")]:
                alone = emulator_alone(server.base_url, ids, threads=args.poll_concurrency)
                row = sweep(settings, svc.engine, dbname, args.parts, workers,
                            args.concurrency, tmp / f"worker-{workers}.log")
                retrieves = sum(b["retrieves"] for b in server.emulator.stats()["batches"])
                print(f"{workers} | {row['seconds']:.1f} | {row['polls_s']:.0f} | "
                      f"{row['worker_ms']:.2f} | {row['pg_ms']:.2f} | "
                      f"{row['emulator_ms']:.2f} | {alone:.0f} | "
                      f"{row['polls_s'] / alone:.2f} | {os.getloadavg()[0]:.2f}"
                      f"  (emulator retrieves so far: {retrieves})", flush=True)
        svc.close()
    finally:
        server.stop()
        drop_pg(dbname)
        if args.keep:
            print(f"worker logs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()

"""The batchyard API against the emulator: read rate, create latency, 200 MB upload memory.

Usage: .venv/bin/python benchmarks/api_bench.py [--seconds 5] [--clients 16] [--upload-mb 200]
       [--workers 1] [--database postgres|sqlite] [--skip-upload]

Starts ``batchyard serve`` (``--database postgres``: a PostgreSQL database created for the run
and the Redis broker; ``--database sqlite``: the embedded default, SQLite database and SQLite
broker in a temporary data dir; a master key, no pipeline workers: creates only record and
nudge) and ``batchyard emulator`` as subprocesses on free ports, then measures, each next to
the same call made straight to the emulator:

- ``GET /v1/batches/{id}`` requests/s with N concurrent keep-alive clients (target >= 1000);
- ``POST /v1/batches`` median, p95 and p99 latency with N concurrent clients (target: median
  at or below the emulator's in the same run, p99 < 100 ms), and the server CPU per create
  (user + system of the serving processes, from ``/proc``, divided by the creates);
- a 200 MB ``POST /v1/files`` (streamed from disk) and the server's peak RSS during it
  (VmHWM after ``clear_refs``; target < 150 MB).

The load generator is a minimal asyncio HTTP/1.1 client, so the client's own cost stays
small next to the servers' on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa

MASTER = "sk-bench-master"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
MB = 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def bench_database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None  # the embedded default: SQLite under the data dir
        return
    name = f"batchyard_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def process(args: list[str], env: dict[str, str],
            health_url: str) -> Iterator[subprocess.Popen[bytes]]:
    # Logs go to DEVNULL: an unread pipe would stall a chatty server.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(health_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def vm_hwm_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024 / MB
    raise RuntimeError("no VmHWM")


def vm_rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024 / MB
    raise RuntimeError("no VmRSS")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a server process and its children (``--workers`` > 1)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# -- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------
class Conn:
    """One keep-alive connection; ``request`` returns (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, base: str) -> Conn:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {MASTER}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                      if k.lower() == "content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def read_rate(base: str, path: str, clients: int, seconds: float) -> float:
    conns = [await Conn.open(base) for _ in range(clients)]
    done = 0
    stop = time.monotonic() + seconds

    async def loop(conn: Conn) -> None:
        nonlocal done
        while time.monotonic() < stop:
            status, _ = await conn.request("GET", path)
            assert status == 200, status
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    return done / elapsed


async def create_latency(base: str, prefix: str, file_id: str, clients: int,
                         per_client: int) -> list[float]:
    body = json.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                       "completion_window": "24h"}).encode()
    conns = [await Conn.open(base) for _ in range(clients)]
    latencies: list[float] = []

    async def loop(conn: Conn) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            status, text = await conn.request("POST", f"{prefix}/batches", body)
            latencies.append(time.perf_counter() - t0)
            assert status == 200, (status, text[:200])

    await asyncio.gather(*(loop(c) for c in conns))
    for conn in conns:
        conn.close()
    return latencies


# -- scenarios --------------------------------------------------------------------------------
def small_jsonl(count: int = 3) -> bytes:
    lines = (json.dumps({"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "gpt-4o-mini",
                                  "messages": [{"role": "user", "content": "hi"}]}}) + "\n"
             for i in range(count))
    return "".join(lines).encode()


def upload(base: str, prefix: str, path: Path | None = None) -> tuple[str, float]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    t0 = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        if path is None:
            files = {"file": ("bench.jsonl", small_jsonl())}
            response = client.post(f"{base}{prefix}/files", headers=headers,
                                   data={"purpose": "batch"}, files=files)
        else:
            with path.open("rb") as fh:
                response = client.post(f"{base}{prefix}/files", headers=headers,
                                       data={"purpose": "batch"},
                                       files={"file": (path.name, fh)})
    response.raise_for_status()
    return response.json()["id"], time.perf_counter() - t0


def make_big_jsonl(path: Path, size: int) -> None:
    line_template = {"custom_id": "", "method": "POST", "url": "/v1/chat/completions",
                     "body": {"model": "gpt-4o-mini", "messages": [
                         {"role": "user", "content": "summarise this message " * 20}]}}
    written = n = 0
    with path.open("w", buffering=1 << 20) as out:
        while written < size:
            line_template["custom_id"] = f"r{n}"
            line = json.dumps(line_template) + "\n"
            out.write(line)
            written += len(line)
            n += 1


def report(name: str, ours: float, theirs: float, unit: str, target: str) -> None:
    ratio = ours / theirs if theirs else float("inf")
    print(f"{name:<42} batchyard {ours:9.1f} {unit:<6} emulator {theirs:9.1f} {unit:<6} "
          f"ratio {ratio:5.2f}   target {target}")


def run(args: argparse.Namespace) -> None:
    api_port, emu_port = free_port(), free_port()
    api, emu = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{emu_port}"
    queue = f"bench{secrets.token_hex(4)}"
    exe = [sys.executable, "-m", "batchyard"]
    with bench_database(args.database) as db_url, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BATCHYARD_MASTER_KEY": MASTER, "BATCHYARD_DATA_DIR": tmp,
               "BATCHYARD_PIPELINE__QUEUE": queue,
               "BATCHYARD_API__MAX_UPLOAD_BYTES": str(args.upload_mb * MB + MB)}
        for name in ("BATCHYARD_DATABASE_URL", "BATCHYARD_BROKER_URL"):
            env.pop(name, None)
        if db_url is not None:
            env.update(BATCHYARD_DATABASE_URL=db_url, BATCHYARD_BROKER_URL=REDIS)
        serve = [*exe, "serve", "--port", str(api_port), "--workers", str(args.workers)]
        emulator = [*exe, "emulator", "--port", str(emu_port), "--validation-delay", "3600",
                    "--max-file-mb", str(args.upload_mb + 10)]
        with process(serve, env, f"{api}/health") as api_proc, \
                process(emulator, env, f"{emu}/v1/batches") as emu_proc:
            measure(args, api, emu, api_proc.pid, emu_proc.pid, Path(tmp))
    if args.database == "postgres":
        import redis

        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{queue}*"):
            client.delete(key)


def measure(args: argparse.Namespace, api: str, emu: str, api_pid: int, emu_pid: int,
            tmp: Path) -> None:
    print(f"clients={args.clients} seconds={args.seconds} server workers={args.workers} "
          f"database={args.database} load average={os.getloadavg()[0]:.2f}")
    api_file, _ = upload(api, "/v1")
    emu_file, _ = upload(emu, "/v1")
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
    body = {"input_file_id": "", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    api_batch = httpx.post(f"{api}/v1/batches", headers=headers,
                           json={**body, "input_file_id": api_file}).json()["id"]
    emu_batch = httpx.post(f"{emu}/v1/batches", headers=headers,
                           json={**body, "input_file_id": emu_file}).json()["id"]

    ours = asyncio.run(read_rate(api, f"/v1/batches/{api_batch}", args.clients, args.seconds))
    theirs = asyncio.run(read_rate(emu, f"/v1/batches/{emu_batch}", args.clients, args.seconds))
    report("GET /v1/batches/{id}", ours, theirs, "req/s", ">= 1000 req/s")

    per_client = max(10, int(args.seconds * 40))
    cpu_before = server_cpu(api_pid), server_cpu(emu_pid)
    ours_lat = asyncio.run(create_latency(api, "/v1", api_file, args.clients, per_client))
    cpu_mid = server_cpu(api_pid), server_cpu(emu_pid)
    theirs_lat = asyncio.run(create_latency(emu, "/v1", emu_file, args.clients, per_client))
    cpu_after = server_cpu(api_pid), server_cpu(emu_pid)
    med_ours, med_theirs = statistics.median(ours_lat) * 1e3, statistics.median(theirs_lat) * 1e3
    report("POST /v1/batches median latency", med_ours, med_theirs, "ms", "<= emulator")
    p95 = statistics.quantiles(ours_lat, n=20)[-1] * 1e3
    p95_emu = statistics.quantiles(theirs_lat, n=20)[-1] * 1e3
    report("POST /v1/batches p95 latency", p95, p95_emu, "ms", "-")
    p99 = statistics.quantiles(ours_lat, n=100)[-1] * 1e3
    p99_emu = statistics.quantiles(theirs_lat, n=100)[-1] * 1e3
    report("POST /v1/batches p99 latency", p99, p99_emu, "ms", "< 100 ms")
    cpu_ours = (cpu_mid[0] - cpu_before[0]) / len(ours_lat) * 1e3
    cpu_theirs = (cpu_after[1] - cpu_mid[1]) / len(theirs_lat) * 1e3
    report("POST /v1/batches server CPU per create", cpu_ours, cpu_theirs, "ms", "-")
    print(f"  ({len(ours_lat)} creates each)")

    if args.skip_upload:
        return
    big = tmp / "big.jsonl"
    make_big_jsonl(big, args.upload_mb * MB)
    size_mb = big.stat().st_size / MB
    for name, base, pid in (("batchyard", api, api_pid), ("emulator", emu, emu_pid)):
        # With --workers N the uvicorn parent only supervises; the children serve.
        pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        idle = max(vm_rss_mb(p) for p in pids)
        for p in pids:
            reset_peak(p)
        _, seconds = upload(base, "/v1", big)
        peak = max(vm_hwm_mb(p) for p in pids)
        print(f"upload {size_mb:.0f} MB to {name:<9}: {seconds:6.2f} s "
              f"({size_mb / seconds:6.1f} MB/s), serving process RSS before {idle:6.1f} MB, "
              f"peak {peak:6.1f} MB (target < 150 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--upload-mb", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres",
                        help="postgres (+ Redis broker) or the embedded SQLite default")
    parser.add_argument("--skip-upload", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()

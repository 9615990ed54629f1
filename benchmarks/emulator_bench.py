"""The emulator alone at full speed: requests per CPU second, upload and download costs.

    .venv/bin/python benchmarks/emulator_bench.py                      # 4 batches x 50,000
    .venv/bin/python benchmarks/emulator_bench.py --batches 20 --requests 50000
    .venv/bin/python benchmarks/emulator_bench.py --profile runner     # cProfile of one run

Four measurements, each with the process CPU seconds (``time.process_time``) it took:

* **inline**: one batch's runner driven five times in the calling thread (best and median).
* **runner**: ``--batches`` batches of ``--requests`` chat lines (the e2e benchmark's lines)
  created on an in-process :class:`Emulator` (no HTTP) and run to ``completed``; requests per
  CPU second and per wall second.
* **upload**: the same JSONL posted as multipart to a real :class:`EmulatorServer` over
  HTTP (client and server in this process, so the CPU includes the httpx client).
* **download**: every output file fetched over HTTP, streamed and thrown away.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import httpx
import orjson

from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.emulator.runner import BatchRunner
from batchyard.emulator.state import Emulator
from batchyard.emulator.store import BatchEntry

FAST = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}


def make_input(n: int, start: int = 0) -> bytes:
    """N chat-completion request lines (e2e_bench.py sends the same)."""
    out = io.BytesIO()
    for i in range(start, start + n):
        out.write(orjson.dumps({"custom_id": f"r-{i}", "method": "POST",
                                "url": "/v1/chat/completions",
                                "body": {"model": "gpt-4o-mini", "max_tokens": 20,
                                         "messages": [{"role": "user",
                                                       "content": f"Say something about {i}"}]}}))
        out.write(b"\n")
    return out.getvalue()


def _wait(emu: Emulator, batch_ids: list[str]) -> None:
    while True:
        with emu.store.lock:
            states = [emu.store.batches[b].status for b in batch_ids]
        if all(s in ("completed", "failed", "expired", "cancelled") for s in states):
            if any(s != "completed" for s in states):
                raise SystemExit(f"batches ended {states}")
            return
        time.sleep(0.01)


def runner_run(inputs: list[bytes], running: int | None = None
               ) -> tuple[float, float, list[float]]:
    """Create every batch at once; (wall, cpu, per-batch end times relative to start)."""
    emu = Emulator(EmulatorConfig(**FAST, **({"running_batches": running} if running else {})))
    try:
        file_ids = []
        for data in inputs:
            path = emu.new_upload_path()
            path.write_bytes(data)
            entry = emu.add_upload(filename="in.jsonl", purpose="batch", path=path,
                                   size=len(data), expires_after=None)
            file_ids.append(entry.id)
        cpu0, t0 = time.process_time(), time.perf_counter()
        batch_ids = [emu.create_batch({"input_file_id": f, "endpoint": "/v1/chat/completions",
                                       "completion_window": "24h"}, lambda b: b.id)
                     for f in file_ids]
        ends: dict[str, float] = {}
        while len(ends) < len(batch_ids):
            with emu.store.lock:
                for b in batch_ids:
                    if b not in ends and emu.store.batches[b].status == "completed":
                        ends[b] = time.perf_counter() - t0
                    elif emu.store.batches[b].status in ("failed", "expired", "cancelled"):
                        raise SystemExit(f"batch {b} ended {emu.store.batches[b].status}")
            time.sleep(0.005)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return wall, cpu, [ends[b] for b in batch_ids]
    finally:
        emu.close()


def inline_run(data: bytes, repeats: int) -> list[float]:
    """One batch's runner driven in the calling thread (no other thread, no GIL handoffs),
    ``repeats`` times; the CPU seconds of each run."""
    emu = Emulator(EmulatorConfig(**FAST))
    try:
        path = emu.new_upload_path()
        path.write_bytes(data)
        entry = emu.add_upload(filename="in.jsonl", purpose="batch", path=path, size=len(data),
                               expires_after=None)
        times = []
        for n in range(repeats):
            now = int(time.time())
            batch = BatchEntry(id=f"batch_inline{n}", endpoint="/v1/chat/completions",
                               input_file_id=entry.id, completion_window="24h",
                               created_at=now, expires_at=now + 86400, metadata=None)
            emu.store.add_batch(batch)
            runner = BatchRunner(emu, batch, path.open("rb"))
            cpu0 = time.process_time()
            runner.run()
            times.append(time.process_time() - cpu0)
            if batch.status != "completed":
                raise SystemExit(f"inline batch ended {batch.status}")
        return times
    finally:
        emu.close()


def http_run(inputs: list[bytes]) -> tuple[float, float, float, float, int]:
    """Upload every input over HTTP, run the batches, download every output.

    Returns (upload wall, upload cpu, download wall, download cpu, downloaded bytes)."""
    with EmulatorServer(EmulatorConfig(**FAST)) as server, httpx.Client(
            base_url=f"{server.base_url}/v1", timeout=120) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        file_ids = []
        for n, data in enumerate(inputs):
            answer = client.post("/files", files={"file": (f"part{n}.jsonl", data)},
                                 data={"purpose": "batch"})
            answer.raise_for_status()
            file_ids.append(answer.json()["id"])
        up_wall, up_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        batch_ids = []
        for file_id in file_ids:
            answer = client.post("/batches", json={"input_file_id": file_id,
                                                   "endpoint": "/v1/chat/completions",
                                                   "completion_window": "24h"})
            answer.raise_for_status()
            batch_ids.append(answer.json()["id"])
        _wait(server.emulator, batch_ids)
        outputs = [client.get(f"/batches/{b}").json()["output_file_id"] for b in batch_ids]
        cpu0, t0 = time.process_time(), time.perf_counter()
        size = 0
        for file_id in outputs:
            with client.stream("GET", f"/files/{file_id}/content") as answer:
                for chunk in answer.iter_raw(1024 * 1024):
                    size += len(chunk)
        return up_wall, up_cpu, time.perf_counter() - t0, time.process_time() - cpu0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50_000, help="requests per batch")
    parser.add_argument("--profile", choices=("runner", "http"), default=None)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--running-batches", type=int, default=None,
                        help="the runner measurement with at most N batches at work at once")
    args = parser.parse_args()
    inputs = [make_input(args.requests, n * args.requests) for n in range(args.batches)]
    total = args.batches * args.requests
    mb = sum(map(len, inputs)) / 1e6
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        runner_run(inputs) if args.profile == "runner" else http_run(inputs)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return
    times = sorted(inline_run(inputs[0], 5))
    print(f"one batch of {args.requests:,} in the calling thread, 5 runs: best {times[0]:.3f}, "
          f"median {times[2]:.3f} CPU s = {args.requests / times[0]:,.0f} requests per CPU "
          f"second (best), {args.requests / times[2]:,.0f} (median)")
    wall, cpu, ends = runner_run(inputs, args.running_batches)
    print(f"runner: {args.batches} batches x {args.requests:,} = {total:,} requests "
          f"({mb:.1f} MB) in {wall:.2f} s wall, {cpu:.2f} CPU s = {total / cpu:,.0f} "
          f"requests per CPU second (running batches {args.running_batches or 'all'}); "
          f"batches done at "
          + ", ".join(f"+{e:.1f}" for e in sorted(ends)) + " s")
    if args.skip_http:
        return
    up_wall, up_cpu, down_wall, down_cpu, size = http_run(inputs)
    print(f"upload over HTTP ({mb:.1f} MB, client + server): {up_wall:.2f} s wall, "
          f"{up_cpu:.2f} CPU s = {mb / up_cpu:,.0f} MB per CPU second")
    print(f"download over HTTP ({size / 1e6:.1f} MB, client + server): {down_wall:.2f} s wall, "
          f"{down_cpu:.2f} CPU s = {size / 1e6 / down_cpu:,.0f} MB per CPU second")


if __name__ == "__main__":
    main()

"""How long ``batchyard status`` (and friends) take from process start to exit.

Creates a temp data dir, migrates it once (``batchyard db upgrade``), records one batch in it
(through the service layer, no worker: it stays ``validating``), then runs each command
``--runs`` times as a fresh process and prints the minimum and median wall time and CPU time
(user + system of the child). The load average is printed too: on a shared machine the
minimum is the figure closest to a quiet one.

    .venv/bin/python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: BATCH stands for the recorded batch's id.
COMMANDS = (["--version"], ["--help"], ["status"], ["status", "BATCH"],
            ["status", "BATCH", "--json"], ["status", "batch_missing"], ["results", "BATCH"])


def _record_a_batch(data_dir: Path) -> str:
    """One batch over a one-line input, recorded without a worker (no nudge is sent)."""
    import io

    from batchyard.config import Settings
    from batchyard.services import batches, files
    from batchyard.services.container import build_services

    line = (b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": '
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n')
    svc = build_services(Settings(data_dir=data_dir), nudge=lambda _task, _id: None)
    try:
        upload = files.create_file(svc, owner=None, filename="in.jsonl", purpose="batch",
                                   stream=io.BytesIO(line))
        return batches.create_batch(svc, owner=None, input_file_id=upload.id,
                                    endpoint="/v1/chat/completions").id
    finally:
        svc.close()


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batchyard", *args], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-cli-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
        env["BATCHYARD_DATA_DIR"] = str(Path(tmp) / "data")
        env["COLUMNS"] = "120"
        subprocess.run([sys.executable, "-m", "batchyard", "db", "upgrade"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        batch_id = _record_a_batch(Path(env["BATCHYARD_DATA_DIR"]))
        print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
        print(f"{'command':<32} {'wall min':>9} {'wall median':>12} {'cpu min':>8} "
              f"{'cpu median':>11}")
        for shown in COMMANDS:
            command = [batch_id if arg == "BATCH" else arg for arg in shown]
            _run(command, env)  # warm the OS file cache and the .pyc files
            samples = [_run(command, env) for _ in range(args.runs)]
            walls = [w for w, _ in samples]
            cpus = [c for _, c in samples]
            label = "batchyard " + " ".join(shown)
            print(f"{label:<32} {min(walls):>8.3f}s {statistics.median(walls):>11.3f}s "
                  f"{min(cpus):>7.3f}s {statistics.median(cpus):>10.3f}s")
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

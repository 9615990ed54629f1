"""The beat scheduler embedded in a worker (``worker --beat``) dies with that worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _wait_for(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_killed_worker_leaves_no_beat_process_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["BATCHYARD_DATA_DIR"] = str(tmp_path / "data")
    worker = subprocess.Popen(
        [sys.executable, "-m", "batchyard", "worker", "--concurrency", "1", "--beat",
         "--loglevel", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        parent = psutil.Process(worker.pid)
        assert _wait_for(lambda: len(parent.children()) >= 1), "the embedded beat never started"
        beat = parent.children()[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert _wait_for(lambda: not beat.is_running() or beat.status() == "zombie", 15.0), \
            "the beat process outlived its worker"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

"""``python -m batchyard.worker``: a worker with the settings from the environment."""

from __future__ import annotations

from batchyard.worker.run import run_worker

if __name__ == "__main__":
    run_worker()

"""Start a worker or a beat scheduler in this process, from Settings."""

from __future__ import annotations

import logging

from batchyard.config import Settings
from batchyard.worker.app import create_celery, worker_queues


def run_worker(settings: Settings | None = None, *, concurrency: int = 8, beat: bool = False,
               loglevel: str = "INFO") -> None:
    """Run a Celery worker (thread pool) consuming every pipeline queue; blocks."""
    settings = settings or Settings()
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_celery(settings)
    argv = ["worker", f"--loglevel={loglevel}", "--pool=threads",
            f"--concurrency={concurrency}", "-Q", ",".join(worker_queues(settings)),
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if beat:
        argv.append("--beat")
    app.worker_main(argv)


def run_beat(settings: Settings | None = None, *, loglevel: str = "INFO") -> None:
    """Run the beat scheduler (sends the tick); blocks."""
    settings = settings or Settings()
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_celery(settings)
    app.start(["beat", f"--loglevel={loglevel}"])

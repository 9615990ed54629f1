"""Start a worker or a beat scheduler in this process, from Settings."""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any

from celery.signals import beat_init, setup_logging

from batchyard.config import Settings
from batchyard.logs import configure
from batchyard.metrics.exposition import serve_worker_metrics
from batchyard.worker.app import create_celery, worker_queues


def _use_our_logging(loglevel: str, log_format: str) -> None:
    """Celery leaves logging alone when ``setup_logging`` has a receiver: ours formats every
    record (text or JSON) the same way as the API's."""
    configure(loglevel, log_format)
    setup_logging.connect(lambda **_: configure(loglevel, log_format), weak=False)


def run_worker(settings: Settings | None = None, *, concurrency: int = 8, beat: bool = False,
               loglevel: str = "INFO", log_format: str = "text") -> None:
    """Run a Celery worker (thread pool) consuming every pipeline queue; blocks."""
    settings = settings or Settings()
    _use_our_logging(loglevel, log_format)
    app = create_celery(settings)
    if settings.metrics.worker_port:
        serve_worker_metrics(settings.metrics.worker_port, settings.metrics.worker_addr)
    # --quiet: no banner (the CLI printed its start line; JSON logs stay JSON).
    argv = ["--quiet", "worker", f"--loglevel={loglevel}", "--pool=threads",
            f"--concurrency={concurrency}", "-Q", ",".join(worker_queues(settings)),
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if beat:
        argv.append("--beat")
        beat_init.connect(functools.partial(_exit_with_worker, os.getpid()), weak=False)
    app.worker_main(argv)


def _exit_with_worker(parent: int, **_: Any) -> None:
    """In the embedded beat process: exit as soon as the worker ``parent`` is gone.

    Without this, a worker killed with SIGKILL leaves its beat child running, and the
    restarted worker starts a second scheduler next to it. ``parent`` is taken before the
    fork, so a worker killed before beat starts is noticed too.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="beat-parent-watch", daemon=True).start()


def run_beat(settings: Settings | None = None, *, loglevel: str = "INFO",
             log_format: str = "text") -> None:
    """Run the beat scheduler (sends the tick); blocks."""
    settings = settings or Settings()
    _use_our_logging(loglevel, log_format)
    app = create_celery(settings)
    app.start(["--quiet", "beat", f"--loglevel={loglevel}"])

"""The pipeline commands of the ``batchyard`` CLI: run, status, results, cancel, worker,
beat, up, db upgrade and demo. Registered on the main Typer app by :mod:`batchyard.cli`.

Heavy imports stay inside the commands so ``batchyard --help`` is fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from batchyard.domain.lifecycle import TERMINAL_BATCH_STATUSES

if TYPE_CHECKING:
    from batchyard.config import Settings
    from batchyard.services.container import Services

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
TERMINAL = TERMINAL_BATCH_STATUSES


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""
    from batchyard import cli_run

    for fn in (cli_run.run, cli_run.status, cli_run.results, cli_run.cancel, worker, beat, up,
               cli_run.demo):
        app.command()(fn)
    app.add_typer(db_app, name="db")


def _settings() -> Settings:
    from batchyard.config import Settings

    return Settings()


def _services(settings: Settings | None = None) -> Services:
    from batchyard.db.migrate import upgrade
    from batchyard.services.container import build_services

    settings = settings or _settings()
    upgrade(settings.effective_database_url)
    return build_services(settings)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the database migrations (SQLite by default, BATCHYARD_DATABASE_URL otherwise)."""
    from batchyard.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}: {_safe_url(settings.effective_database_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def worker(concurrency: int = typer.Option(8, help="Worker threads."),
           with_beat: bool = typer.Option(False, "--beat", help="Also run the scheduler."),
           loglevel: str = typer.Option("INFO", help="Log level.")) -> None:
    """Run a pipeline worker (Celery; scale by starting more, on any host)."""
    from batchyard.worker.run import run_worker

    run_worker(_settings(), concurrency=concurrency, beat=with_beat, loglevel=loglevel)


def beat(loglevel: str = typer.Option("INFO", help="Log level.")) -> None:
    """Run the scheduler that ticks the poller and the sweep (run exactly one)."""
    from batchyard.worker.run import run_beat

    run_beat(_settings(), loglevel=loglevel)


def up(host: str | None = typer.Option(None, help="API address (default 127.0.0.1)."),
       port: int | None = typer.Option(None, help="API port (default 4000)."),
       concurrency: int = typer.Option(8, help="Worker threads.")) -> None:
    """Run everything on one machine: the API, a worker and the scheduler."""
    import uvicorn

    from batchyard.api.app import create_app

    settings = _settings()
    api = settings.api.model_copy(update={k: v for k, v in (("host", host), ("port", port))
                                          if v is not None})
    settings = settings.model_copy(update={"api": api})
    _services(settings).close()  # migrations first, once
    proc = start_worker_process(os.environ.copy(), concurrency=concurrency, beat=True)
    try:
        uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port,
                    log_level="warning")
    finally:
        stop_process(proc)


def start_worker_process(env: dict[str, str], *, concurrency: int = 4, beat: bool = True,
                         loglevel: str = "WARNING",
                         log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``batchyard worker`` as a child process with ``env``."""
    cmd = [sys.executable, "-m", "batchyard", "worker", "--concurrency", str(concurrency),
           "--loglevel", loglevel]
    if beat:
        cmd.append("--beat")
    if log is None:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM when the process that started it dies, however it dies
    (uvicorn re-raises SIGTERM after its shutdown, so a ``finally`` is not enough)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child started here (TERM, then KILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that rebuild ``settings`` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["BATCHYARD_DATA_DIR"] = str(settings.data_dir)
    for name in ("database_url", "broker_url", "openai_api_base", "crash_at"):
        value = getattr(settings, name)
        if value:
            env[f"BATCHYARD_{name.upper()}"] = str(value)
    if settings.openai_api_key is not None:
        env["BATCHYARD_OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    for section in ("pipeline", "http"):
        for key, value in getattr(settings, section).model_dump().items():
            env[f"BATCHYARD_{section.upper()}__{key.upper()}"] = str(value)
    return env


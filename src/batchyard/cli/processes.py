"""``batchyard up / serve / worker / beat``: the long-running processes, and the helpers that
start a worker as a child process (``up``, ``demo``, tests, benchmarks).

Each prints one start line (address, database without password, broker, deployments,
concurrency) before it starts, and logs through :mod:`batchyard.logs`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from batchyard.cli.common import EXIT_USAGE, fail, safe_url, settings

#: uvicorn's httptools protocol with a header read timeout and header size bound.
HTTP_PROTOCOL = "batchyard.api.protocol:BoundedHttpToolsProtocol"

if TYPE_CHECKING:
    from batchyard.config import Settings
    from batchyard.deployments import DeploymentRegistry

logger = logging.getLogger("batchyard.cli")

LogLevelOption = Annotated[str, typer.Option(
    "--log-level", "--loglevel", help="DEBUG, INFO, WARNING or ERROR.")]
LogFormatOption = Annotated[str, typer.Option("--log-format", help="text or json.")]
AccessLogOption = Annotated[bool, typer.Option(
    "--access-log", help="Log every HTTP request (off by default: it costs CPU per call).")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for command in (up, serve, worker, beat):
        app.command()(command)


def _logging(level: str, fmt: str, *, access_log: bool = False) -> None:
    from batchyard.logs import FORMATS, LEVELS, configure

    if level.upper() not in LEVELS:
        fail(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        fail(f"--log-format must be text or json, not {fmt!r}")
    configure(level, fmt, access_log=access_log)


def _deployments(cfg: Settings) -> DeploymentRegistry:
    from batchyard.deployments import load_deployments
    from batchyard.errors import ConfigError

    try:
        return load_deployments(cfg)  # a bad config.yaml stops start-up with a clear message
    except ConfigError as exc:
        fail(exc.message, EXIT_USAGE)


def describe_deployments(registry: DeploymentRegistry) -> str:
    """``openai (openai, any model), east-1 (azure, batch-gpt-4o-mini)``: never a key."""
    deps = registry.batch_deployments()
    if not deps:
        return "none"
    return ", ".join(f"{d.id} ({d.provider}, "
                     f"{'any model' if d.model_name == '*' else d.model_name})" for d in deps)


def start_line(role: str, cfg: Settings, registry: DeploymentRegistry, *,
               address: str | None = None, concurrency: int | None = None) -> str:
    """What this process is and what it talks to (passwords hidden, keys never shown)."""
    from batchyard.cli.local import describe_data

    fields = []
    if address:
        fields.append(f"api {address}")
    fields.append(describe_data(cfg))
    fields.append(f"broker {safe_url(cfg.effective_broker_url)}")
    fields.append(f"deployments {describe_deployments(registry)}")
    if concurrency is not None:
        fields.append(f"concurrency {concurrency}")
    return f"batchyard {role}: " + "; ".join(fields)


def announce(role: str, cfg: Settings, registry: DeploymentRegistry, *,
             address: str | None = None, concurrency: int | None = None) -> None:
    """Print the start line (always, whatever the log level) and warn about no deployment."""
    typer.echo(start_line(role, cfg, registry, address=address, concurrency=concurrency),
               err=True)
    if not registry.batch_deployments():
        logger.warning("no deployment is configured: batches will fail until you set "
                       "OPENAI_API_KEY (or AZURE_API_KEY + AZURE_API_BASE) or "
                       "BATCHYARD_CONFIG_FILE")


def check_deployments_in_background(registry: DeploymentRegistry) -> None:
    """Check each deployment once (list its batches) and log any failure, e.g. a 401, with
    the provider's message; start-up does not wait for it."""
    import threading

    from batchyard.services.health import check_deployments

    def check() -> None:
        for result in check_deployments(registry):
            if not result.healthy:
                logger.warning("deployment.unhealthy", extra={
                    "deployment": result.id, "provider": result.provider,
                    "error": result.error})

    threading.Thread(target=check, name="deployment-check", daemon=True).start()


def _api_settings(config: Path | None, host: str | None, port: int | None) -> Settings:
    """Settings from env, with the command line's overrides."""
    cfg = settings()
    api = cfg.api.model_copy(update={k: v for k, v in (("host", host), ("port", port))
                                     if v is not None})
    update: dict[str, object] = {"api": api}
    if config is not None:
        update["config_file"] = config
    return cfg.model_copy(update=update)


def _check_bind(cfg: Settings) -> None:
    from batchyard.api.app import check_bind_safety
    from batchyard.errors import ConfigError

    try:
        check_bind_safety(cfg)
    except ConfigError as exc:
        fail(exc.message, EXIT_USAGE)


HostOption = Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).",
                                                show_default=False)]
PortOption = Annotated[int | None, typer.Option(help="Port (default 4000).", show_default=False)]
ConfigOption = Annotated[Path | None, typer.Option(
    help="LiteLLM-shaped config.yaml (model_list).", show_default=False)]


def serve(host: HostOption = None, port: PortOption = None, config: ConfigOption = None,
          migrate: Annotated[bool, typer.Option(
              help="Bring the database schema up to date first.")] = True,
          workers: Annotated[int | None, typer.Option(
              help="uvicorn processes (default: one per CPU core, at most 4; "
                   "BATCHYARD_API__WORKERS).", show_default=False)] = None,
          log_level: LogLevelOption = "INFO", log_format: LogFormatOption = "text",
          access_log: AccessLogOption = False) -> None:
    """Run the OpenAI-compatible Files + Batches API (uvicorn)."""
    import uvicorn

    from batchyard.api.app import create_app
    from batchyard.db.migrate import upgrade
    from batchyard.logs import dict_config

    cfg = _api_settings(config, host, port)
    _check_bind(cfg)
    registry = _deployments(cfg)
    _logging(log_level, log_format, access_log=access_log)
    if migrate:
        upgrade(cfg.effective_database_url)
    workers = workers or cfg.api.effective_workers
    announce("serve", cfg, registry, address=f"http://{cfg.api.host}:{cfg.api.port}",
             concurrency=workers)
    log_config = dict_config(log_level, log_format, access_log=access_log)
    if workers > 1:
        from batchyard.metrics import multiproc

        # The processes write their metrics to one shared directory, merged by /metrics.
        multiproc.prepare(cfg.data_dir / "prometheus")
        # Worker processes rebuild Settings from env; hand the overrides over that way.
        os.environ["BATCHYARD_API__HOST"] = cfg.api.host
        os.environ["BATCHYARD_API__PORT"] = str(cfg.api.port)
        if cfg.config_file is not None:
            os.environ["BATCHYARD_CONFIG_FILE"] = str(cfg.config_file)
        _serve_processes(uvicorn.Config(
            "batchyard.api.app:app_from_env", factory=True, host=cfg.api.host,
            port=cfg.api.port, workers=workers, log_config=log_config,
            access_log=access_log, http=HTTP_PROTOCOL))
        return
    uvicorn.run(create_app(cfg), host=cfg.api.host, port=cfg.api.port, log_config=log_config,
                access_log=access_log, http=HTTP_PROTOCOL)


def _serve_processes(config: Any) -> None:
    """uvicorn's multi-process serving (its supervisor: restarts, health checks, signals),
    with a listening socket per process on Linux so connections spread over them
    (:mod:`batchyard.api.listener`)."""
    from uvicorn.supervisors import Multiprocess

    from batchyard.api.listener import balanced_listener

    sock = balanced_listener(config.host, config.port)
    if sock is None:
        sock = config.bind_socket()
    Multiprocess(config, sockets=[sock]).run()


def worker(concurrency: Annotated[int, typer.Option(help="Worker threads.")] = 8,
           with_beat: Annotated[bool, typer.Option(
               "--beat", help="Also run the scheduler.")] = False,
           log_level: LogLevelOption = "INFO", log_format: LogFormatOption = "text",
           no_start_line: Annotated[bool, typer.Option(
               "--no-start-line", hidden=True, help="Started by `up`, which printed it.")
           ] = False) -> None:
    """Run a pipeline worker (Celery; scale by starting more, on any host)."""
    from batchyard.worker.run import run_worker

    _logging(log_level, log_format)
    cfg = settings()
    if not no_start_line:
        announce("worker" + (" --beat" if with_beat else ""), cfg, _deployments(cfg),
                 concurrency=concurrency)
    run_worker(cfg, concurrency=concurrency, beat=with_beat, loglevel=log_level.upper(),
               log_format=log_format)


def beat(log_level: LogLevelOption = "INFO", log_format: LogFormatOption = "text") -> None:
    """Run the scheduler that ticks the poller and the sweep (run exactly one)."""
    from batchyard.worker.run import run_beat

    _logging(log_level, log_format)
    cfg = settings()
    announce("beat", cfg, _deployments(cfg))
    run_beat(cfg, loglevel=log_level.upper(), log_format=log_format)


def up(host: HostOption = None, port: PortOption = None, config: ConfigOption = None,
       concurrency: Annotated[int, typer.Option(help="Worker threads.")] = 8,
       log_level: LogLevelOption = "INFO", log_format: LogFormatOption = "text",
       access_log: AccessLogOption = False) -> None:
    """Run everything on one machine: the API, a worker and the scheduler."""
    from batchyard.metrics import multiproc

    cfg = _api_settings(config, host, port)
    # Before prometheus_client is first imported: the API's /metrics then shows the worker's
    # counters too (both processes write to this directory; the worker inherits the env).
    multiproc.prepare(cfg.data_dir / "prometheus")
    import uvicorn

    from batchyard.api.app import create_app
    from batchyard.db.migrate import upgrade
    from batchyard.logs import dict_config

    _check_bind(cfg)
    registry = _deployments(cfg)
    _logging(log_level, log_format, access_log=access_log)
    upgrade(cfg.effective_database_url)  # migrations first, once
    announce("up", cfg, registry, address=f"http://{cfg.api.host}:{cfg.api.port}",
             concurrency=concurrency)
    check_deployments_in_background(registry)
    env = os.environ.copy()
    env["BATCHYARD_DATA_DIR"] = str(cfg.data_dir)
    if cfg.config_file is not None:
        env["BATCHYARD_CONFIG_FILE"] = str(cfg.config_file)
    proc = start_worker_process(env, concurrency=concurrency, beat=True, loglevel=log_level,
                                log_format=log_format, inherit_output=True, quiet=True)
    try:
        uvicorn.run(create_app(cfg), host=cfg.api.host, port=cfg.api.port,
                    log_config=dict_config(log_level, log_format, access_log=access_log),
                    access_log=access_log, http=HTTP_PROTOCOL)
    finally:
        stop_process(proc)


def start_worker_process(env: dict[str, str], *, concurrency: int = 4, beat: bool = True,
                         loglevel: str = "WARNING", log: Path | None = None,
                         log_format: str = "text", inherit_output: bool = False,
                         quiet: bool = False) -> subprocess.Popen[bytes]:
    """Start ``batchyard worker`` as a child process with ``env``; its output goes to ``log``,
    to this process's stderr (``inherit_output``), or nowhere. ``quiet``: no start line."""
    cmd = [sys.executable, "-m", "batchyard", "worker", "--concurrency", str(concurrency),
           "--log-level", loglevel, "--log-format", log_format]
    if beat:
        cmd.append("--beat")
    if quiet:
        cmd.append("--no-start-line")
    common = {"env": env, "start_new_session": True, "preexec_fn": _die_with_parent}
    if inherit_output:
        return subprocess.Popen(cmd, stdout=sys.stderr.fileno(), **common)  # type: ignore[call-overload]
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                **common)  # type: ignore[call-overload]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                **common)  # type: ignore[call-overload]


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


def settings_env(cfg: Settings) -> dict[str, str]:
    """Environment variables that rebuild ``cfg`` in a child process."""
    from pydantic import SecretStr

    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["BATCHYARD_DATA_DIR"] = str(cfg.data_dir)
    for name in ("database_url", "broker_url", "openai_api_base", "crash_at", "config_file",
                 "storage_backend"):
        value = getattr(cfg, name)
        if value:
            env[f"BATCHYARD_{name.upper()}"] = str(value)
    if cfg.openai_api_key is not None:
        env["BATCHYARD_OPENAI_API_KEY"] = cfg.openai_api_key.get_secret_value()
    for section in ("pipeline", "http", "s3"):
        for key, value in getattr(cfg, section).model_dump().items():
            if value is None:
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"BATCHYARD_{section.upper()}__{key.upper()}"] = text
    return env

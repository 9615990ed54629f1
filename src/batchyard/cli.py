"""The ``batchyard`` command line.

Each command is a thin wrapper: it builds Settings and calls into the service layer (or, for
``emulator``, the stand-alone provider emulator). Heavy imports happen inside the commands so
``batchyard --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from batchyard.cli_schedules import schedule_app, webhooks_app

if TYPE_CHECKING:
    from batchyard.config import Settings
    from batchyard.services.container import Services

app = typer.Typer(
    name="batchyard",
    help="Run OpenAI / Azure OpenAI Batch API jobs and keep every result in SQL.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _version

    typer.echo(_version("batchyard"))


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8900, help="Port to listen on."),
    flavor: str = typer.Option("openai", help="Which provider to emulate: openai or azure."),
    api_key: list[str] = typer.Option([], help="Accepted API key (repeatable; none: any)."),
    validation_delay: float = typer.Option(0.2, help="Seconds a batch spends validating."),
    request_latency: float = typer.Option(0.0, help="Seconds per request line."),
    finalize_delay: float = typer.Option(0.2, help="Seconds a batch spends finalizing."),
    cancel_grace: float = typer.Option(0.2, help="Seconds a batch spends cancelling."),
    completion_window: float = typer.Option(86400.0, help="Seconds before expiry (OpenAI)."),
    max_file_mb: int = typer.Option(200, help="Largest accepted upload, in MB."),
    max_requests: int | None = typer.Option(None, help="Requests per batch (default 50k/100k)."),
    known_model: list[str] = typer.Option([], help="Known model/deployment (repeatable)."),
    token_quota: int | None = typer.Option(None, help="Enqueued-token quota per model."),
    fail_fast_quota: bool = typer.Option(False, help="Azure: 400 at create when over quota."),
    rate_limit_next: int = typer.Option(0, help="Answer the next N calls with 429."),
    retry_after: float = typer.Option(1.0, help="Retry-After seconds on a 429."),
    server_error_next: int = typer.Option(0, help="Answer the next N calls with 500."),
    drop_next: int = typer.Option(0, help="Drop the connection of the next N calls."),
    slow_next: int = typer.Option(0, help="Delay the next N calls by --slow-delay."),
    slow_delay: float = typer.Option(0.0, help="Seconds of delay for slow calls."),
    failure_rate: float = typer.Option(0.0, help="Fraction of request lines that fail."),
    failure_status: int = typer.Option(500, help="HTTP status of failing request lines."),
    fault_path: str | None = typer.Option(None, help="Call faults only where the path has this."),
    fault_method: str | None = typer.Option(None, help="Call faults only for this method."),
    drop_after_handling: bool = typer.Option(False, help="Drop after the call took effect."),
    no_output_file_next: int = typer.Option(0, help="Next N batches get no output file."),
    not_found_after_create: int = typer.Option(0, help="New batches 404 their first N gets."),
    fail_validation_next: int = typer.Option(0, help="Next N batches fail validation."),
    fail_validation_code: str = typer.Option("invalid_request", help="Code for those."),
    embedding_dimensions: int = typer.Option(16, help="Embedding size if none requested."),
    data_dir: str | None = typer.Option(None, help="Where file bytes go (default: temp)."),
) -> None:
    """Run the local OpenAI / Azure OpenAI Files + Batches emulator."""
    from batchyard.emulator.server import serve

    serve(
        host=host, port=port, flavor=flavor, api_keys=tuple(api_key),
        validation_delay=validation_delay, request_latency=request_latency,
        finalize_delay=finalize_delay, cancel_grace=cancel_grace,
        completion_window=completion_window, max_file_bytes=max_file_mb * 1024 * 1024,
        max_requests=max_requests, known_models=tuple(known_model),
        enqueued_token_quota=token_quota, azure_fail_fast_quota=fail_fast_quota,
        rate_limit_next=rate_limit_next, retry_after=retry_after,
        server_error_next=server_error_next, drop_next=drop_next, slow_next=slow_next,
        slow_delay=slow_delay, request_failure_rate=failure_rate,
        request_failure_status=failure_status, fault_path=fault_path,
        fault_method=fault_method, drop_after_handling=drop_after_handling,
        no_output_file_next=no_output_file_next, not_found_after_create=not_found_after_create,
        fail_validation_next=fail_validation_next, fail_validation_code=fail_validation_code,
        embedding_dimensions=embedding_dimensions, data_dir=data_dir,
    )


def _api_settings(config: Path | None = None, host: str | None = None,
                  port: int | None = None) -> Settings:
    """Settings from env, with the command line's overrides."""
    from batchyard.config import Settings

    settings = Settings()
    api = settings.api.model_copy(update={k: v for k, v in (("host", host), ("port", port))
                                          if v is not None})
    update: dict[str, object] = {"api": api}
    if config is not None:
        update["config_file"] = config
    return settings.model_copy(update=update)


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 4000)."),
    config: Path | None = typer.Option(None, help="LiteLLM-shaped config.yaml (model_list)."),
    migrate: bool = typer.Option(True, help="Bring the database schema up to date first."),
    workers: int | None = typer.Option(
        None, help="uvicorn processes (default: one per CPU core, at most 4; "
                   "BATCHYARD_API__WORKERS)."),
) -> None:
    """Run the OpenAI-compatible Files + Batches API (uvicorn)."""
    import os

    import uvicorn

    from batchyard.api.app import check_bind_safety, create_app
    from batchyard.db.migrate import upgrade
    from batchyard.deployments import load_deployments
    from batchyard.errors import ConfigError

    settings = _api_settings(config, host, port)
    try:
        check_bind_safety(settings)
        load_deployments(settings)  # a bad config.yaml stops start-up with a clear message
    except ConfigError as exc:
        _fail(exc.message)
    if migrate:
        upgrade(settings.effective_database_url)
    workers = workers or settings.api.effective_workers
    if workers > 1:
        # Worker processes rebuild Settings from env; hand the overrides over that way.
        os.environ["BATCHYARD_API__HOST"] = settings.api.host
        os.environ["BATCHYARD_API__PORT"] = str(settings.api.port)
        if settings.config_file is not None:
            os.environ["BATCHYARD_CONFIG_FILE"] = str(settings.config_file)
        uvicorn.run("batchyard.api.app:app_from_env", factory=True, host=settings.api.host,
                    port=settings.api.port, workers=workers, log_level="warning",
                    access_log=False)
        return
    # No access log: at log level warning it printed nothing, yet cost a call per request.
    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port,
                log_level="warning", access_log=False)


keys_app = typer.Typer(help="Manage virtual API keys (stored hashed; shown once).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(schedule_app, name="schedule")  # issue 5: cli_schedules.py
app.add_typer(webhooks_app, name="webhooks")


def _key_services() -> Services:
    from batchyard.services.container import build_services

    return build_services(_api_settings(), nudge=lambda _task, _id: None)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="A label for the key."),
    max_file_bytes: int | None = typer.Option(None, help="Largest upload for this key."),
    max_batches_in_flight: int | None = typer.Option(None, help="Unfinished batches allowed."),
    can_schedule: bool = typer.Option(False, help="May create schedules."),
) -> None:
    """Create a virtual key and print it (the only time it is shown)."""
    from batchyard.services import keys

    svc = _key_services()
    try:
        record, plaintext = keys.create_key(svc, name=name, max_file_bytes=max_file_bytes,
                                            max_batches_in_flight=max_batches_in_flight,
                                            can_schedule=can_schedule)
    finally:
        svc.close()
    typer.echo(f"id:  {record.id}\nkey: {plaintext}\n(store it now: it is not shown again)")


@keys_app.command("list")
def keys_list() -> None:
    """List virtual keys (never their secrets)."""
    from rich.console import Console
    from rich.table import Column, Table

    from batchyard.services import keys

    svc = _key_services()
    try:
        records = keys.list_keys(svc)
    finally:
        svc.close()
    table = Table(Column("id", no_wrap=True), "name", "prefix", "created_at", "revoked_at",
                  "max_file_bytes", "max_batches_in_flight", "can_schedule")
    for k in records:
        table.add_row(k.id, k.name, k.key_prefix + "…", str(k.created_at),
                      str(k.revoked_at or "-"), str(k.max_file_bytes or "-"),
                      str(k.max_batches_in_flight or "-"), str(k.can_schedule))
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (key_...).")) -> None:
    """Revoke a virtual key at once."""
    from batchyard.errors import NotFoundError
    from batchyard.services import keys

    svc = _key_services()
    try:
        record = keys.revoke_key(svc, key_id)
    except NotFoundError as exc:
        _fail(exc.message)
    finally:
        svc.close()
    typer.echo(f"revoked {record.id} ({record.name})")


@app.command()
def health(config: Path | None = typer.Option(None, help="LiteLLM-shaped config.yaml.")) -> None:
    """Check every mode: batch deployment by listing its batches (limit 1)."""
    from rich.console import Console
    from rich.table import Column, Table

    from batchyard.deployments import load_deployments
    from batchyard.errors import ConfigError
    from batchyard.services import health as health_service

    settings = _api_settings(config)
    try:
        registry = load_deployments(settings)
    except ConfigError as exc:
        _fail(exc.message)
    results = health_service.check_deployments(registry)
    table = Table(Column("id", no_wrap=True), "model_name", "provider", "healthy", "error")
    for r in results:
        table.add_row(r.id, r.model_name, r.provider, "yes" if r.healthy else "NO", r.error or "")
    Console().print(table)
    if not all(r.healthy for r in results):
        raise typer.Exit(1)


def _register_pipeline() -> None:
    # run, status, results, cancel, worker, beat, up, db upgrade, demo (cli_pipeline.py)
    from batchyard.cli_pipeline import register

    register(app)


_register_pipeline()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

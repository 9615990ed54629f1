"""``batchyard schedule ...`` and ``batchyard webhooks ...``: recurring batches from the shell.

The CLI acts as the master (it talks to the database directly), so it may use every source
kind. Heavy imports happen inside the commands so ``batchyard --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from batchyard.services.container import Services

schedule_app = typer.Typer(help="Recurring batches: cron + time zone + a source of requests.",
                           no_args_is_help=True)
webhooks_app = typer.Typer(help="Completion webhooks.", no_args_is_help=True)


@webhooks_app.callback()
def _webhooks() -> None:
    """Completion webhooks (a group even with one command: ``batchyard webhooks test URL``)."""


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextmanager
def _services(*, nudge: bool = False) -> Iterator[Services]:
    """The shared service layer (nudges only when a command may create batches)."""
    from batchyard.config import Settings
    from batchyard.errors import BatchyardError
    from batchyard.services.container import build_services

    svc = build_services(Settings(), nudge=None if nudge else (lambda _task, _id: None))
    try:
        yield svc
    except BatchyardError as exc:
        _fail(exc.message)
    finally:
        svc.close()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _metadata(pairs: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--metadata expects key=value, got {pair!r}")
        out[key] = value
    return out or None


def _source(file_id: str | None, call: str | None, path: str | None) -> dict[str, str]:
    given = [(k, v) for k, v in (("file_id", file_id), ("target", call), ("path", path)) if v]
    if len(given) != 1:
        _fail("give exactly one source: --file-id, --callable or --path")
    key, value = given[0]
    kind = {"file_id": "file", "target": "callable", "path": "path"}[key]
    return {"kind": kind, key: value}


@schedule_app.command("add")
def schedule_add(
    cron: str = typer.Option(..., help='Cron expression, e.g. "0 2 * * *".'),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone, e.g. Europe/Paris."),
    name: str = typer.Option("", help="A label."),
    file_id: str | None = typer.Option(None, help="Source: a stored file, submitted as is."),
    call: str | None = typer.Option(None, "--callable",
                                    help="Source: package.module:function returning requests."),
    path: str | None = typer.Option(None, help="Source: JSONL path, e.g. /in/{yesterday}.jsonl"),
    endpoint: str = typer.Option("/v1/chat/completions", help="Batch endpoint."),
    model: str | None = typer.Option(None, help="Model group for the batches."),
    metadata: list[str] = typer.Option([], help="key=value, repeatable."),
    webhook_url: str | None = typer.Option(None, help="POST a signed event when a batch ends."),
    webhook_secret: str | None = typer.Option(None, envvar="BATCHYARD_WEBHOOK_SECRET",
                                              help="HMAC secret for this schedule's webhook."),
    overlap: str = typer.Option("skip", help="skip (while the last batch runs) or allow."),
    catch_up: str = typer.Option("once", help="After downtime: once (one run) or skip."),
    disabled: bool = typer.Option(False, help="Create it paused."),
) -> None:
    """Create a schedule and print its id and first fire time."""
    from pydantic import ValidationError

    from batchyard.services import schedules

    body: dict[str, Any] = {
        "name": name, "cron": cron, "timezone": tz, "source": _source(file_id, call, path),
        "endpoint": endpoint, "model": model, "metadata": _metadata(metadata),
        "webhook_url": webhook_url, "webhook_secret": webhook_secret, "overlap": overlap,
        "catch_up": catch_up, "enabled": not disabled}
    try:
        spec = schedules.ScheduleSpec.model_validate(body)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    with _services() as svc:
        record = schedules.create_schedule(svc, spec, owner=None)
    typer.echo(f"{record.id}  next run {_when(record.next_fire_at)}")


def _source_label(source: dict[str, Any]) -> str:
    values = [str(v) for k, v in source.items() if k != "kind"]
    return f"{source.get('kind')}: {values[0] if values else ''}"


@schedule_app.command("list")
def schedule_list() -> None:
    """List schedules."""
    from rich.console import Console
    from rich.table import Column, Table

    from batchyard.services import schedules

    with _services() as svc:
        records = schedules.list_schedules(svc, owner=None)
    table = Table(Column("id", no_wrap=True), "name", "cron", "tz", "source", "next run",
                  "last run")
    for r in records:
        table.add_row(r.id, r.name, r.cron, r.timezone, _source_label(r.source),
                      _when(r.next_fire_at) if r.enabled else "paused", _when(r.last_fire_at))
    Console().print(table)


def _show(action: Callable[..., Any], schedule_id: str) -> None:
    from batchyard.api.wire import schedule_object

    with _services() as svc:
        record = action(svc, schedule_id, owner=None)
    typer.echo(json.dumps(schedule_object(record), indent=2))


@schedule_app.command("show")
def schedule_show(schedule_id: str = typer.Argument(..., help="sched_...")) -> None:
    """Print one schedule as JSON."""
    from batchyard.services import schedules

    _show(schedules.get_schedule, schedule_id)


@schedule_app.command("pause")
def schedule_pause(schedule_id: str = typer.Argument(..., help="sched_...")) -> None:
    """Stop firing a schedule."""
    from batchyard.services import schedules

    _show(schedules.pause_schedule, schedule_id)


@schedule_app.command("resume")
def schedule_resume(schedule_id: str = typer.Argument(..., help="sched_...")) -> None:
    """Fire again from the next slot (slots missed while paused are not run)."""
    from batchyard.services import schedules

    _show(schedules.resume_schedule, schedule_id)


@schedule_app.command("remove")
def schedule_remove(schedule_id: str = typer.Argument(..., help="sched_...")) -> None:
    """Delete a schedule and its run history (its batches stay)."""
    from batchyard.services import schedules

    with _services() as svc:
        schedules.delete_schedule(svc, schedule_id, owner=None)
    typer.echo(f"removed {schedule_id}")


@schedule_app.command("runs")
def schedule_runs(schedule_id: str = typer.Argument(..., help="sched_..."),
                  limit: int = typer.Option(20, help="How many, newest first.")) -> None:
    """Show a schedule's runs: batch created, skipped and why, or the source's error."""
    from rich.console import Console
    from rich.table import Column, Table

    from batchyard.services import schedules

    with _services() as svc:
        runs = schedules.list_runs(svc, schedule_id, owner=None, limit=limit)
    table = Table(Column("fire time", no_wrap=True), "status", Column("batch", no_wrap=True),
                  "batch status", "note")
    for run in runs:
        note = run.reason or ""
        if run.error:
            note = (note + ": " if note else "") + run.error.strip().splitlines()[-1]
        table.add_row(_when(run.fire_time), run.status, run.batch_id or "-",
                      run.batch_status or "-", note)
    Console().print(table)


@schedule_app.command("tick")
def schedule_tick(loop: bool = typer.Option(False, help="Keep ticking (a stand-alone scheduler).")
                  ) -> None:
    """Fire due schedules and send due webhooks once (or forever with --loop)."""
    import time

    from batchyard.services import notifications, schedules

    with _services(nudge=True) as svc:
        while True:
            report = schedules.tick(svc)
            sent = notifications.deliver_due(svc)
            for run in report.runs:
                typer.echo(f"{_when(run.fire_time)} {run.schedule_id} {run.status} "
                           f"{run.batch_id or run.reason or ''}")
            if sent:
                typer.echo(f"webhook attempts: {len(sent)}")
            if not loop:
                return
            time.sleep(svc.settings.schedules.tick_seconds)


@webhooks_app.command("test")
def webhooks_test(
    url: str = typer.Argument(..., help="The receiver's URL."),
    secret: str | None = typer.Option(None, envvar="BATCHYARD_WEBHOOK_SECRET",
                                      help="HMAC secret (default: the configured one)."),
) -> None:
    """POST a signed sample batch.completed event to URL and report the answer."""
    from batchyard.config import Settings
    from batchyard.services import notifications

    settings = Settings()
    if secret is None and settings.schedules.webhook_secret is not None:
        secret = settings.schedules.webhook_secret.get_secret_value()
    code, error = notifications.send_test_event(
        url, secret=secret, settings=settings,
        timeout=settings.schedules.webhook_timeout_seconds)
    signed = "signed" if secret else "UNSIGNED (no secret configured)"
    if error is not None:
        _fail(f"delivery failed ({signed}): {error}")
    typer.echo(f"delivered ({signed}): HTTP {code}")

"""``batchyard schedule ...`` and ``batchyard webhooks ...``: recurring batches from the shell.

Locally the CLI acts as the master (every source kind is allowed); with ``--url`` it goes
through the server's ``/v1/schedules`` routes with the given key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from batchyard.cli.backend import open_backend
from batchyard.cli.common import ApiKeyOption, JsonObject, UrlOption, fail, settings
from batchyard.cli.group import new_app

schedule_app = new_app(help="Recurring batches: cron + time zone + a source of requests.")
webhooks_app = new_app(help="Completion webhooks.")

ScheduleId = Annotated[str, typer.Argument(help="sched_...")]


def register(app: typer.Typer) -> None:
    """Add this module's command groups to ``app``."""
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.callback()
def _webhooks() -> None:
    """Completion webhooks (a group even with one command: ``batchyard webhooks test URL``)."""


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _metadata(pairs: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--metadata expects key=value, got {pair!r}")
        out[key] = value
    return out or None


def _source(file_id: str | None, call: str | None, path: str | None) -> dict[str, str]:
    given = [(k, v) for k, v in (("file_id", file_id), ("target", call), ("path", path)) if v]
    if len(given) != 1:
        fail("give exactly one source: --file-id, --callable or --path")
    key, value = given[0]
    kind = {"file_id": "file", "target": "callable", "path": "path"}[key]
    return {"kind": kind, key: value}


def _validated(body: JsonObject) -> JsonObject:
    """The spec as the server would accept it (errors before anything is sent)."""
    from pydantic import ValidationError

    from batchyard.services.schedules import ScheduleSpec

    try:
        ScheduleSpec.model_validate(body)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    return {k: v for k, v in body.items() if v is not None}


@schedule_app.command("add")
def schedule_add(
    cron: Annotated[str, typer.Option(help='Cron expression, e.g. "0 2 * * *".')],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Paris.")] = "UTC",
    name: Annotated[str, typer.Option(help="A label.")] = "",
    file_id: Annotated[str | None, typer.Option(
        help="Source: a stored file, submitted as is.", show_default=False)] = None,
    call: Annotated[str | None, typer.Option(
        "--callable", help="Source: package.module:function returning requests.",
        show_default=False)] = None,
    path: Annotated[str | None, typer.Option(
        help="Source: JSONL path, e.g. /in/{yesterday}.jsonl", show_default=False)] = None,
    endpoint: Annotated[str, typer.Option(help="Batch endpoint.")] = "/v1/chat/completions",
    model: Annotated[str | None, typer.Option(
        help="Model group for the batches.", show_default=False)] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        help="key=value, repeatable.", show_default=False)] = None,
    webhook_url: Annotated[str | None, typer.Option(
        help="POST a signed event when a batch ends.", show_default=False)] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        envvar="BATCHYARD_WEBHOOK_SECRET", show_default=False,
        help="HMAC secret for this schedule's webhook.")] = None,
    overlap: Annotated[str, typer.Option(
        help="skip (while the last batch runs) or allow.")] = "skip",
    catch_up: Annotated[str, typer.Option(
        help="After downtime: once (one run) or skip.")] = "once",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it paused.")] = False,
    url: UrlOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Create a schedule and print its id and first fire time."""
    body: JsonObject = {
        "name": name, "cron": cron, "timezone": tz, "source": _source(file_id, call, path),
        "endpoint": endpoint, "model": model, "metadata": _metadata(metadata or []),
        "webhook_url": webhook_url, "webhook_secret": webhook_secret, "overlap": overlap,
        "catch_up": catch_up, "enabled": not disabled}
    spec = _validated(body)
    with open_backend(url, api_key) as backend:
        record = backend.create_schedule(spec)
    typer.echo(f"{record['id']}  next run {_when(record.get('next_fire_at'))}")


def _source_label(source: dict[str, Any]) -> str:
    values = [str(v) for k, v in source.items() if k != "kind"]
    return f"{source.get('kind')}: {values[0] if values else ''}"


@schedule_app.command("list")
def schedule_list(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """List schedules."""
    from rich.console import Console
    from rich.table import Column, Table

    with open_backend(url, api_key) as backend:
        records = backend.list_schedules()
    table = Table(Column("id", no_wrap=True), "name", "cron", "tz", "source", "next run",
                  "last run")
    for r in records:
        table.add_row(r["id"], r["name"], r["cron"], r["timezone"], _source_label(r["source"]),
                      _when(r["next_fire_at"]) if r["enabled"] else "paused",
                      _when(r["last_fire_at"]))
    Console().print(table)


def _show(action: str, schedule_id: str, url: str | None, api_key: str | None) -> None:
    with open_backend(url, api_key) as backend:
        record = backend.schedule_action(schedule_id, action)
    typer.echo(json.dumps(record, indent=2))


@schedule_app.command("show")
def schedule_show(schedule_id: ScheduleId, url: UrlOption = None,
                  api_key: ApiKeyOption = None) -> None:
    """Print one schedule as JSON."""
    _show("get", schedule_id, url, api_key)


@schedule_app.command("pause")
def schedule_pause(schedule_id: ScheduleId, url: UrlOption = None,
                   api_key: ApiKeyOption = None) -> None:
    """Stop firing a schedule."""
    _show("pause", schedule_id, url, api_key)


@schedule_app.command("resume")
def schedule_resume(schedule_id: ScheduleId, url: UrlOption = None,
                    api_key: ApiKeyOption = None) -> None:
    """Fire again from the next slot (slots missed while paused are not run)."""
    _show("resume", schedule_id, url, api_key)


@schedule_app.command("remove")
def schedule_remove(schedule_id: ScheduleId, url: UrlOption = None,
                    api_key: ApiKeyOption = None) -> None:
    """Delete a schedule and its run history (its batches stay)."""
    with open_backend(url, api_key) as backend:
        backend.schedule_action(schedule_id, "delete")
    typer.echo(f"removed {schedule_id}")


@schedule_app.command("runs")
def schedule_runs(schedule_id: ScheduleId,
                  limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
                  url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Show a schedule's runs: batch created, skipped and why, or the source's error."""
    from rich.console import Console
    from rich.table import Column, Table

    with open_backend(url, api_key) as backend:
        runs = backend.schedule_runs(schedule_id, limit)
    table = Table(Column("fire time", no_wrap=True), "status", Column("batch", no_wrap=True),
                  "batch status", "note")
    for run in runs:
        note = run.get("reason") or ""
        if run.get("error"):
            note = (note + ": " if note else "") + str(run["error"]).strip().splitlines()[-1]
        table.add_row(_when(run["fire_time"]), run["status"], run.get("batch_id") or "-",
                      run.get("batch_status") or "-", note)
    Console().print(table)


@schedule_app.command("tick")
def schedule_tick(loop: Annotated[bool, typer.Option(
        "--loop", help="Keep ticking (a stand-alone scheduler).")] = False) -> None:
    """Fire due schedules and send due webhooks once (or forever with --loop); local only."""
    import time

    from batchyard.cli.local import open_services
    from batchyard.services import notifications, schedules

    svc = open_services()
    try:
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
    finally:
        svc.close()


@webhooks_app.command("test")
def webhooks_test(
    url: Annotated[str, typer.Argument(help="The receiver's URL.")],
    secret: Annotated[str | None, typer.Option(
        envvar="BATCHYARD_WEBHOOK_SECRET", show_default=False,
        help="HMAC secret (default: the configured one).")] = None,
) -> None:
    """POST a signed sample batch.completed event to URL and report the answer."""
    from batchyard.services import notifications

    cfg = settings()
    if secret is None and cfg.schedules.webhook_secret is not None:
        secret = cfg.schedules.webhook_secret.get_secret_value()
    code, error = notifications.send_test_event(
        url, secret=secret, settings=cfg, timeout=cfg.schedules.webhook_timeout_seconds)
    signed = "signed" if secret else "UNSIGNED (no secret configured)"
    if error is not None:
        fail(f"delivery failed ({signed}): {error}")
    typer.echo(f"delivered ({signed}): HTTP {code}")

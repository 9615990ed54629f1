"""``batchyard keys create / list / revoke``: virtual API keys (stored hashed; shown once)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from batchyard.cli.backend import open_backend
from batchyard.cli.common import EXIT_USAGE, ApiKeyOption, UrlOption, fail
from batchyard.cli.group import new_app

keys_app = new_app(help="Manage virtual API keys (stored hashed; shown once).")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(keys_app, name="keys")


def _when(ts: int | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key.")],
    max_file_bytes: Annotated[int | None, typer.Option(
        help="Largest upload for this key.", show_default=False)] = None,
    max_batches_in_flight: Annotated[int | None, typer.Option(
        help="Unfinished batches allowed.", show_default=False)] = None,
    can_schedule: Annotated[bool, typer.Option(
        "--can-schedule", help="May create schedules.")] = False,
    url: UrlOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Create a virtual key and print it (the only time it is shown)."""
    body = {"name": name, "max_file_bytes": max_file_bytes,
            "max_batches_in_flight": max_batches_in_flight, "can_schedule": can_schedule}
    with open_backend(url, api_key) as backend:
        created = backend.create_key(body)
    typer.echo(f"id:  {created['id']}\nkey: {created['key']}\n"
               "(store it now: it is not shown again)")


@keys_app.command("list")
def keys_list(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """List virtual keys (never their secrets)."""
    from rich.console import Console
    from rich.table import Column, Table

    with open_backend(url, api_key) as backend:
        records = backend.list_keys()
    table = Table(Column("id", no_wrap=True), "name", "prefix", "created_at", "revoked_at",
                  "max_file_bytes", "max_batches_in_flight", "can_schedule", "budget (USD)",
                  "spent (USD)")
    for k in records:
        table.add_row(k["id"], k["name"], k["key_prefix"] + "…", _when(k["created_at"]),
                      _when(k["revoked_at"]), str(k["max_file_bytes"] or "-"),
                      str(k["max_batches_in_flight"] or "-"), str(k["can_schedule"]),
                      _budget(k), k.get("spent_usd") or "-")
    Console().print(table)


def _budget(key: dict[str, object]) -> str:
    amount = key.get("max_budget_usd")
    return "-" if amount is None else f"{amount} ({key.get('budget_period') or 'total'})"


@keys_app.command("budget")
def keys_budget(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    max_usd: Annotated[str | None, typer.Option(
        "--max-usd", help="The budget in USD (omit to remove it).", show_default=False)] = None,
    monthly: Annotated[bool, typer.Option(
        "--monthly", help="Per calendar month (UTC) instead of in total.")] = False,
) -> None:
    """Set a key's spending budget: creates that would pass it are refused."""
    from batchyard.cli.local import open_services
    from batchyard.errors import BatchyardError
    from batchyard.services import costs

    svc = open_services()
    try:
        view = costs.set_key_budget(svc, key_id, max_budget_usd=max_usd,
                                    period="monthly" if monthly else "total")
    except BatchyardError as exc:
        fail(exc.message, EXIT_USAGE)
    finally:
        svc.close()
    fields = costs.budget_fields(view)
    typer.echo(f"{key_id}: budget {fields['max_budget_usd'] or 'none'} "
               f"({fields['budget_period'] or '-'}), spent {fields['spent_usd']}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
                url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Revoke a virtual key at once."""
    from batchyard.errors import NotFoundError

    with open_backend(url, api_key) as backend:
        try:
            record = backend.revoke_key(key_id)
        except NotFoundError as exc:
            fail(exc.message, EXIT_USAGE)
    typer.echo(f"revoked {record['id']} ({record['name']})")

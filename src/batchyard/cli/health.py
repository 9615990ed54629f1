"""``batchyard health``: check each ``mode: batch`` deployment (list its batches, limit 1) on
a running server (``--url``) or from this machine's configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from batchyard.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    ApiKeyOption,
    JsonObject,
    UrlOption,
    fail,
    settings,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(health)


def _local(config: Path | None) -> list[JsonObject]:
    from batchyard.deployments import load_deployments
    from batchyard.errors import ConfigError
    from batchyard.services.health import check_deployments

    cfg = settings()
    if config is not None:
        cfg = cfg.model_copy(update={"config_file": config})
    try:
        registry = load_deployments(cfg)
    except ConfigError as exc:
        fail(exc.message, EXIT_USAGE)
    return [r.to_dict() for r in check_deployments(registry)]


def health(config: Annotated[Path | None, typer.Option(
               help="LiteLLM-shaped config.yaml (local check only).", show_default=False)
           ] = None,
           url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Check every deployment; exit 1 when none is configured or any is unhealthy."""
    from rich.console import Console
    from rich.table import Column, Table

    if url:
        from batchyard.cli.remote import RemoteBackend

        remote = RemoteBackend(url, api_key)
        try:
            results = remote.deployment_health()
        finally:
            remote.close()
        where = f"server {remote.base}"
    else:
        results, where = _local(config), "this machine's configuration"
    if not results:
        fail(f"no deployment is configured ({where}): set OPENAI_API_KEY (or AZURE_API_KEY + "
             "AZURE_API_BASE) or BATCHYARD_CONFIG_FILE")
    table = Table(Column("id", no_wrap=True), "model_name", "provider", "healthy", "error")
    for r in results:
        table.add_row(str(r["id"]), str(r["model_name"]), str(r["provider"]),
                      "yes" if r["healthy"] else "NO", str(r.get("error") or ""))
    Console().print(table)
    if not all(r["healthy"] for r in results):
        raise typer.Exit(EXIT_ERROR)

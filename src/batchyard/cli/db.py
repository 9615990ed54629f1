"""``batchyard db upgrade``: create or migrate the database (the other commands only check
its schema version)."""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.cli.common import safe_url, settings
from batchyard.cli.group import new_app

db_app = new_app(help="Database schema.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
               ) -> None:
    """Apply the database migrations (SQLite in the data dir, or BATCHYARD_DATABASE_URL)."""
    from batchyard.db.migrate import upgrade

    cfg = settings()
    if cfg.database_url is None:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.effective_database_url, revision)
    typer.echo(f"database at {revision}: {safe_url(cfg.effective_database_url)}")

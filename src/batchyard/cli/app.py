"""The ``batchyard`` Typer app: the root options, one-line errors, and tidy help.

Every command group lives in its own module and registers itself here. A command error is one
line on stderr with a non-zero exit code; the traceback only with ``--debug``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.cli.group import new_app

app = new_app(root=True, name="batchyard",
              help="Run OpenAI / Azure OpenAI Batch API jobs and keep every result in SQL.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"batchyard {version('batchyard')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the installed version and exit.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="BATCHYARD_DEBUG", help="Show the traceback of an error.")] = False,
) -> None:
    """Run OpenAI / Azure OpenAI Batch API jobs and keep every result in SQL."""


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _version_of

    typer.echo(_version_of("batchyard"))


def _register() -> None:
    from batchyard.cli import batches, costs, db, demo, health, keys, processes, schedules

    for module in (batches, processes, health, demo, keys, schedules, db, costs):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="batchyard")

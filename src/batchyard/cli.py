"""The ``batchyard`` command line.

Each command is a thin wrapper: it builds Settings and calls into the service layer (or, for
``emulator``, the stand-alone provider emulator). Heavy imports happen inside the commands so
``batchyard --help`` stays fast.
"""

from __future__ import annotations

import typer

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
) -> None:
    """Run the local OpenAI / Azure OpenAI Files + Batches emulator."""
    from batchyard.emulator.server import serve

    serve(host=host, port=port, flavor=flavor)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

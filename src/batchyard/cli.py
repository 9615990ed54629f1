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
        request_failure_status=failure_status,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

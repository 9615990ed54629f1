"""``batchyard estimate FILE`` (local, nothing sent) and ``batchyard cost`` (spend so far)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from batchyard.cli.backend import open_backend
from batchyard.cli.common import EXIT_USAGE, ApiKeyOption, UrlOption, fail, settings

GROUPS = ("batch", "part", "key", "model", "deployment", "schedule", "day")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(estimate)
    app.command()(cost)


def estimate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input JSONL.")],
    model: Annotated[str | None, typer.Option(
        help="Model group (default: the JSONL's).", show_default=False)] = None,
    provider: Annotated[str | None, typer.Option(
        help="Force a provider (openai, azure, anthropic).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate a JSONL and estimate its cost at batch rates, offline (nothing is sent).

    Input tokens: ~4 characters per token; output: each request's max_completion_tokens /
    max_output_tokens / max_tokens, else 1,024 (0 for embeddings): an upper bound.
    """
    from batchyard.errors import JsonlError
    from batchyard.services.costs import OfflinePricing, estimate_chunks

    pricing = OfflinePricing.from_settings(settings())
    try:
        with file.open("rb") as fh:
            est = estimate_chunks(pricing, iter(lambda: fh.read(1 << 20), b""),
                                  model=model, provider=provider)
    except JsonlError as exc:
        fail(f"{file}: {exc.message}", EXIT_USAGE)
    data = {"requests": est.requests, "input_tokens": est.input_tokens,
            "output_tokens": est.output_tokens, "currency": est.currency,
            "estimate": None if est.cost is None else f"{est.cost:f}",
            "price_source": est.source, "unpriced_reason": est.unpriced_reason}
    if as_json:
        typer.echo(json.dumps(data))
        return
    amount = ("unpriced: " + str(est.unpriced_reason) if est.cost is None
              else f"${est.cost:.6f} ({est.source})")
    typer.echo(f"requests {est.requests:,} · input ~{est.input_tokens:,} tokens · "
               f"output <= {est.output_tokens:,} tokens · estimate {amount}")


def cost(
    by: Annotated[str, typer.Option(
        "--by", help="Group by: batch, part, key, model, deployment, schedule or day.")] = "model",
    since: Annotated[str | None, typer.Option(
        help="From (ISO date/time or unix seconds, UTC).", show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        help="Until, exclusive.", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option(
        help="Only this batch.", show_default=False)] = None,
    key: Annotated[str | None, typer.Option(
        help="Only this key's batches (key_...).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = None, api_key: ApiKeyOption = None,
) -> None:
    """What has been spent, from the stored per-request costs (exact, USD)."""
    from batchyard.errors import InvalidInputError
    from batchyard.services.costs import parse_time

    if by not in GROUPS:
        fail(f"--by must be one of {', '.join(GROUPS)}", EXIT_USAGE)
    try:
        query: dict[str, Any] = {"group_by": by, "since": parse_time(since, "since"),
                                 "until": parse_time(until, "until"), "owner": key,
                                 "batch_id": batch}
    except InvalidInputError as exc:
        fail(exc.message, EXIT_USAGE)
    with open_backend(url, api_key) as backend:
        report = backend.cost_report(query)
    if as_json:
        typer.echo(json.dumps(report))
        return
    _print_report(report, by)


def _print_report(report: dict[str, Any], by: str) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(Column(by, no_wrap=True), Column("requests", justify="right"),
                  Column("unpriced", justify="right"), Column("input tokens", justify="right"),
                  Column("output tokens", justify="right"),
                  Column("cost (USD)", justify="right"))
    for row in report["data"]:
        table.add_row(row["group"] or "-", f"{row['requests']:,}", f"{row['unpriced']:,}",
                      f"{row['input_tokens']:,}", f"{row['output_tokens']:,}",
                      _money(row["cost"]))
    table.add_row("total", "", "", "", "", _money(report["total"]))
    Console().print(table)


def _money(amount: str) -> str:
    from decimal import Decimal

    return f"{Decimal(amount):.6f}"

"""How batches look in a terminal: tables, a progress line with a rate-based ETA, the reasons
a batch did not fully succeed, and the exit code that goes with its outcome."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from batchyard.cli.common import EXIT_COMPLETED_WITH_FAILURES, EXIT_NOT_COMPLETED, EXIT_OK

if TYPE_CHECKING:
    from rich.console import Console

    from batchyard.domain.records import BatchRecord
    from batchyard.domain.reports import FailureGroup, PartSummary


def outcome_code(batch: BatchRecord) -> int:
    """0 all succeeded, 3 completed with failed requests, 4 failed / expired / cancelled."""
    if batch.status != "completed":
        return EXIT_NOT_COMPLETED
    return EXIT_COMPLETED_WITH_FAILURES if batch.request_counts.failed else EXIT_OK


def when(ts: float | None) -> str:
    """A local timestamp, or '-'."""
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(seconds: float) -> str:
    """H:MM:SS."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def batches_table(records: list[BatchRecord]) -> Any:
    """One row per batch; ids are what users copy into the next command: never cut them."""
    from rich.table import Column, Table

    table = Table(Column("batch", no_wrap=True), Column("status", no_wrap=True), "total",
                  "completed", "failed", "created")
    for rec in records:
        c = rec.request_counts
        table.add_row(rec.id, rec.status, str(c.total), str(c.completed), str(c.failed),
                      when(rec.created_at))
    return table


def parts_table(parts: list[PartSummary]) -> Any:
    """One row per part: where it went and what the provider says (errors come below)."""
    from rich.table import Column, Table

    table = Table(Column("part", no_wrap=True), "attempt", "deployment",
                  Column("provider batch", no_wrap=True), Column("status", no_wrap=True),
                  "provider status", "requests", "completed", "failed")
    for p in parts:
        table.add_row(p.id, str(p.attempt), p.deployment or "-", p.provider_batch_id or "-",
                      p.status, p.provider_status or "-", str(p.request_count),
                      str(p.completed), str(p.failed))
    return table


def progress_line(batch: BatchRecord, now: float | None = None) -> str:
    """``status 203/500 (41%) 12.3 req/s ETA 0:00:24``: the rate since the batch started."""
    c = batch.request_counts
    done = c.completed + c.failed
    text = f"{batch.status} {done}/{c.total}"
    if c.total:
        text += f" ({100 * done // c.total}%)"
    if c.failed:
        text += f", {c.failed} failed"
    text += f", {cost_text(batch)}"
    started = batch.in_progress_at
    if started and done and batch.status in ("in_progress", "finalizing"):
        elapsed = max((now or time.time()) - started, 1e-3)
        rate = done / elapsed
        text += f", {rate:.1f} req/s, ETA {duration((c.total - done) / rate)}"
    return text


def cost_text(batch: BatchRecord) -> str:
    """``$0.000412 spent (estimate $0.001360)``, plus unpriced answers when there are any."""
    from decimal import Decimal

    cost = batch.cost
    text = f"${Decimal(cost.actual):.6f} spent"
    if cost.estimate is not None:
        text += f" (estimate ${Decimal(cost.estimate):.6f})"
    if cost.unpriced_requests:
        text += f", {cost.unpriced_requests} unpriced"
    return text


def print_reasons(console: Console, batch: BatchRecord, failures: list[FailureGroup],
                  parts: list[PartSummary]) -> None:
    """The batch's errors (code, message, line), failed requests by code with examples, and
    the error of any part that failed (when the batch carries none of its own)."""
    errors = batch.errors.data if batch.errors else ()
    for err in errors:
        where = f" (line {err.line})" if err.line else ""
        console.print(f"  error [bold]{err.code}[/]{where}: {err.message}", highlight=False)
    if not errors:
        for part in parts:
            if part.error and part.status not in ("ingested", "completed"):
                console.print(f"  part {part.id} ({part.deployment or 'no deployment'}): "
                              f"{part.error}", highlight=False)
    for group in failures:
        examples = ", ".join(e.custom_id for e in group.examples)
        more = "" if group.count <= len(group.examples) else ", ..."
        message = next((e.message for e in group.examples if e.message), "")
        status = next((e.status_code for e in group.examples if e.status_code), None)
        label = group.code or (f"HTTP {status}" if status else "no code")
        console.print(f"  {group.count} failed with [bold]{label}[/]"
                      f"{': ' + message if message else ''} (e.g. {examples}{more})",
                      highlight=False)


def print_outcome(console: Console, batch: BatchRecord, failures: list[FailureGroup],
                  parts: list[PartSummary]) -> int:
    """A one-line verdict plus the reasons; returns the exit code for this outcome."""
    c = batch.request_counts
    code = outcome_code(batch)
    if code == EXIT_OK:
        console.print(f"[green]{batch.id} completed: all {c.total} requests succeeded[/]",
                      highlight=False)
    elif code == EXIT_COMPLETED_WITH_FAILURES:
        console.print(f"[yellow]{batch.id} completed with failures: {c.completed} succeeded, "
                      f"{c.failed} failed of {c.total}[/]", highlight=False)
    else:
        console.print(f"[red]{batch.id} ended {batch.status}: {c.completed} succeeded, "
                      f"{c.failed} failed of {c.total}[/]", highlight=False)
    console.print(f"  cost: {cost_text(batch)}", highlight=False)
    print_reasons(console, batch, failures, parts)
    return code


def batch_json(batch: BatchRecord, parts: list[PartSummary] | None = None,
               failures: list[FailureGroup] | None = None) -> dict[str, Any]:
    """The machine-readable form of ``status``."""
    out: dict[str, Any] = {"object": "batch", **batch.model_dump(mode="json",
                                                                 exclude={"owner_key_id"})}
    if parts is not None:
        out["parts"] = [p.model_dump(mode="json") for p in parts]
    if failures is not None:
        out["failures"] = [g.model_dump(mode="json") for g in failures]
    from batchyard.domain.lifecycle import TERMINAL_BATCH_STATUSES

    ended = batch.status in TERMINAL_BATCH_STATUSES
    out["exit_code"] = outcome_code(batch) if ended else None
    return out

"""Jinja filters of the dashboard: ages, times, percentages, metadata."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment


def age(then: float | None, now: float | None = None) -> str:
    """A short age: ``42s``, ``5m``, ``3h 10m``, ``2d 4h``."""
    if then is None:
        return ""
    seconds = max(0, int((now if now is not None else time.time()) - then))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h {minutes % 60}m"
    return f"{days}d {hours % 24}h"


def utc(ts: float | None) -> str:
    """A unix time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(done: int | None, total: int | None) -> int:
    """``done`` of ``total`` as a whole percentage in 0..100."""
    if not total:
        return 0
    return max(0, min(100, round(100 * (done or 0) / total)))


def pairs(metadata: Any) -> str:
    """Metadata as ``k=v`` pairs for a table cell."""
    if not isinstance(metadata, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in metadata.items())


def money(value: Any) -> str:
    """A dollar amount, with more digits for the small amounts batches often cost."""
    if value is None:
        return ""
    amount = float(value)
    if amount < 0.01:
        return f"${amount:.6f}"
    return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"


def install_filters(env: Environment) -> None:
    """Register the filters on the templates' environment."""
    env.filters.update(age=age, utc=utc, percent=percent, pairs=pairs, money=money)

"""The one backoff: how long to wait before retrying, and what a server's Retry-After says.

Used by the provider adapters (HTTP retries), the webhook notifier (delivery retries) and the
poller (a provider batch that did not move is polled less often). Pure functions of numbers;
time and randomness come in as arguments, so tests need no clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime


def retry_delay(attempt: int, *, initial: float, cap: float, factor: float = 2.0,
                jitter: float = 0.0, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    Exponential (``initial * factor**(attempt-1)``, at most ``cap``), then shortened by a
    random fraction of at most ``jitter`` so many clients failing together do not retry in
    step.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0 <= jitter <= 1:
        raise ValueError("jitter is a fraction between 0 and 1")
    exponent = min(attempt - 1, 64)  # 2**64 * anything is past any sane cap already
    base = float(min(cap, initial * factor ** exponent))
    return base * (1.0 - jitter * rand()) if jitter else base


def grow_delay(previous: float | None, *, reset: bool, initial: float, cap: float,
               factor: float) -> float:
    """The next delay of a backoff that remembers its last delay instead of an attempt count.

    ``reset`` (or no previous delay) starts again at ``initial``; otherwise the previous delay
    is multiplied by ``factor``, kept between ``initial`` and ``cap``.
    """
    if previous is None or reset:
        return initial
    return min(max(previous * factor, initial), cap)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():  # plain dicts are case-sensitive; HTTP is not
        if key.lower() == name:
            return candidate
    return None


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait, or ``None`` when it did not say (usably).

    Looks at ``retry-after-ms`` (milliseconds, OpenAI's own), then ``retry-after`` (seconds,
    or an HTTP date, turned into seconds from ``now``, a Unix time). A date in the past means
    0. Callers decide how long is too long to wait.
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None and (value := _seconds(millis.strip())) is not None:
        return value / 1000.0
    text = _header(headers, "retry-after")
    if text is None:
        return None
    text = text.strip()
    if (value := _seconds(text)) is not None:
        return value
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; anything else is not one
    return max(0.0, when.timestamp() - now)

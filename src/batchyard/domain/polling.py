"""When to poll a provider batch again (the backoff itself lives in :mod:`.backoff`)."""

from __future__ import annotations

from batchyard.domain.backoff import grow_delay


def next_poll_delay(previous: float | None, *, changed: bool, min_s: float, max_s: float,
                    factor: float) -> float:
    """Seconds until the next poll of a provider batch.

    Adaptive: each poll that saw no change multiplies the delay by ``factor`` up to
    ``max_s``; any progress (status or request counts moved) snaps back to ``min_s``,
    because a batch that just moved usually moves again soon.
    """
    return grow_delay(previous, reset=changed, initial=min_s, cap=max_s, factor=factor)


def first_poll_delay(*, first_s: float, min_s: float) -> float:
    """Seconds until the first poll of a new provider batch: soon (``first_s``), never later
    than the normal interval. Polls after it back off from ``min_s`` (:func:`next_poll_delay`
    never goes below it), so only the first answer is hurried."""
    return max(0.0, min(first_s, min_s))

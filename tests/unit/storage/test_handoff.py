"""Handoff: a consumer thread behind a short queue (used by the database and S3 stores)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from batchyard.storage.base import Aborted, Handoff


def test_items_arrive_in_order_and_close_returns_the_result() -> None:
    handoff: Handoff[int, list[int]] = Handoff(list)
    for i in range(100):
        handoff.put(i)
    assert handoff.close() == list(range(100))


def test_the_consumer_runs_on_another_thread() -> None:
    seen: list[str] = []

    def consume(items: Iterator[int]) -> None:
        seen.append(threading.current_thread().name)
        for _ in items:
            pass

    handoff: Handoff[int, None] = Handoff(consume, name="writer-under-test")
    handoff.put(1)
    handoff.close()
    assert seen == ["writer-under-test"]


def test_a_failing_consumer_is_raised_to_the_producer_which_never_blocks() -> None:
    def consume(items: Iterator[int]) -> None:
        for item in items:
            if item == 3:
                raise OSError("disk full")

    handoff: Handoff[int, None] = Handoff(consume, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(10_000):  # far more than the queue holds
            handoff.put(i)
    with pytest.raises(OSError, match="disk full"):
        handoff.close()


def test_abort_raises_inside_the_consumer() -> None:
    outcome: list[str] = []

    def consume(items: Iterator[int]) -> None:
        try:
            for _ in items:
                pass
        except Aborted:
            outcome.append("rolled back")
            raise
        outcome.append("committed")

    handoff: Handoff[int, None] = Handoff(consume)
    handoff.put(1)
    handoff.abort()
    assert outcome == ["rolled back"]

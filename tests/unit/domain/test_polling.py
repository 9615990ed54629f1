"""Poll scheduling."""

from __future__ import annotations

import itertools

from batchyard.domain.polling import next_poll_delay

POLL = {"min_s": 30.0, "max_s": 600.0, "factor": 1.5}


def test_first_poll_and_any_change_use_the_minimum() -> None:
    assert next_poll_delay(None, changed=False, **POLL) == 30.0
    assert next_poll_delay(400.0, changed=True, **POLL) == 30.0


def test_backs_off_while_nothing_changes_and_stops_at_the_maximum() -> None:
    real: list[float] = []
    previous: float | None = None
    for _ in range(12):
        previous = next_poll_delay(previous, changed=False, **POLL)
        real.append(previous)
    assert real[:4] == [30.0, 45.0, 67.5, 101.25]
    assert all(b >= a for a, b in itertools.pairwise(real))
    assert real[-1] == 600.0 and max(real) == 600.0


def test_a_previous_delay_below_the_minimum_is_raised_to_it() -> None:
    assert next_poll_delay(1.0, changed=False, **POLL) == 30.0

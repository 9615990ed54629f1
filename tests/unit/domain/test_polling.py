"""Poll scheduling and retry backoff."""

from __future__ import annotations

import itertools
from email.utils import formatdate

import pytest

from batchyard.domain.polling import next_poll_delay, parse_retry_after, retry_delay

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


def test_retry_delay_doubles_up_to_the_cap_without_jitter() -> None:
    delays = [retry_delay(n, initial=0.5, cap=8.0, jitter=0.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize(("r", "expected"), [(0.0, 4.0), (1.0, 3.0), (0.5, 3.5)])
def test_retry_jitter_shortens_by_at_most_the_fraction(r: float, expected: float) -> None:
    assert retry_delay(4, initial=0.5, cap=8.0, jitter=0.25, rand=lambda: r) == expected


def test_retry_delay_survives_huge_attempt_numbers() -> None:
    assert retry_delay(10_000, initial=1.0, cap=60.0, jitter=0.0) == 60.0


@pytest.mark.parametrize(("attempt", "jitter"), [(0, 0.1), (1, -0.1), (1, 1.5)])
def test_retry_delay_rejects_nonsense(attempt: int, jitter: float) -> None:
    with pytest.raises(ValueError):
        retry_delay(attempt, initial=1.0, cap=2.0, jitter=jitter)


NOW = 1_780_000_000.0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After-Ms": "250"}, 0.25),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ({"retry-after": "20"}, 20.0),
    ({"Retry-After": "2.5"}, 2.5),
    ({"retry-after": formatdate(NOW + 42, usegmt=True)}, 42.0),
    ({"retry-after": formatdate(NOW - 42, usegmt=True)}, 0.0),
    ({"retry-after": "-3"}, None),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "next tuesday"}, None),
    ({}, None),
    ({"x-request-id": "req_1"}, None),
])
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, NOW) == expected

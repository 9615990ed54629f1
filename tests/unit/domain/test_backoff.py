"""The one backoff: exponential retry delays with jitter, grown delays, Retry-After."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from batchyard.domain.backoff import grow_delay, parse_retry_after, retry_delay


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


def test_retry_delay_grows_then_caps() -> None:
    delays = [retry_delay(n, initial=1.0, cap=10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_delay_with_another_factor() -> None:
    assert [retry_delay(n, initial=1.0, cap=100.0, factor=3.0) for n in (1, 2, 3)] == [
        1.0, 3.0, 9.0]


def test_grow_delay_starts_resets_grows_and_caps() -> None:
    kwargs = {"initial": 2.0, "cap": 5.0, "factor": 2.0}
    assert grow_delay(None, reset=False, **kwargs) == 2.0
    assert grow_delay(4.0, reset=True, **kwargs) == 2.0
    assert grow_delay(2.0, reset=False, **kwargs) == 4.0
    assert grow_delay(4.0, reset=False, **kwargs) == 5.0
    assert grow_delay(0.1, reset=False, **kwargs) == 2.0

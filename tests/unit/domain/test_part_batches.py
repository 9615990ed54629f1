"""iter_part_batches: room per line for growth at upload (a model name rewritten)."""

from __future__ import annotations

import pytest

from batchyard.domain.jsonl import RequestLine, iter_part_batches
from batchyard.errors import JsonlError


def _lines(sizes: list[int]) -> list[RequestLine]:
    return [RequestLine(i + 1, f"r{i}", "POST", "/v1/x", "m", b"x" * n, 1, n)
            for i, n in enumerate(sizes)]


def _part_sizes(lines: list[RequestLine], **kwargs: int) -> list[int]:
    counts: dict[int, int] = {}
    for index, batch in iter_part_batches(lines, **kwargs):
        counts[index] = counts.get(index, 0) + len(batch)
    return [counts[i] for i in sorted(counts)]


@pytest.mark.parametrize("n", [5, 300, 1000])  # below and above the splitter's run of 256
def test_line_overhead_counts_against_the_byte_limit(n: int) -> None:
    lines = _lines([9] * n)
    assert _part_sizes(lines, max_requests=10_000, max_bytes=30) == [3] * (n // 3) + (
        [n % 3] if n % 3 else [])
    with_room = _part_sizes(lines, max_requests=10_000, max_bytes=30, line_overhead=5)
    assert with_room == [2] * (n // 2) + ([n % 2] if n % 2 else [])


def test_a_line_that_only_fits_without_its_overhead_is_refused() -> None:
    assert _part_sizes(_lines([9]), max_requests=10, max_bytes=10) == [1]
    with pytest.raises(JsonlError) as info:
        list(iter_part_batches(_lines([9]), max_requests=10, max_bytes=10, line_overhead=1))
    assert info.value.line == 1


def test_a_negative_overhead_is_refused() -> None:
    with pytest.raises(ValueError):
        list(iter_part_batches(_lines([1]), max_requests=1, max_bytes=10, line_overhead=-1))

"""iter_part_batches and iter_part_blocks: the same part boundaries, streamed; room per line
for growth at upload (a model name rewritten)."""

from __future__ import annotations

import random

import pytest

from batchyard.domain.inputs import RequestBlock
from batchyard.domain.jsonl import (
    RequestLine,
    iter_part_batches,
    iter_part_blocks,
    iter_request_blocks,
    iter_request_lines,
)
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


def _blocks_of(lines: list[RequestLine], size: int) -> list[RequestBlock]:
    from batchyard.domain.inputs import _block_of
    return [_block_of(lines[i:i + size]) for i in range(0, len(lines), size)]


@pytest.mark.parametrize("seed", range(12))
def test_blocks_are_cut_where_the_line_splitter_cuts(seed: int) -> None:
    rng = random.Random(seed)
    lines = _lines([rng.randint(1, 40) for _ in range(rng.randint(1, 700))])
    limits = {"max_requests": rng.randint(1, 60), "max_bytes": rng.randint(41, 900),
              "line_overhead": rng.choice([0, 0, 3])}
    expected: dict[int, list[str]] = {}
    for index, batch in iter_part_batches(lines, **limits):
        expected.setdefault(index, []).extend(line.custom_id for line in batch)
    got: dict[int, list[str]] = {}
    for index, block in iter_part_blocks(_blocks_of(lines, rng.randint(1, 150)), **limits):
        assert block.sizes  # never an empty block
        got.setdefault(index, []).extend(block.custom_ids)
    assert got == expected


def test_a_block_line_too_big_for_any_part_is_refused_with_its_number() -> None:
    with pytest.raises(JsonlError) as info:
        list(iter_part_blocks(_blocks_of(_lines([5, 5, 50, 5]), 3), max_requests=10,
                              max_bytes=40))
    assert info.value.line == 3


def test_request_blocks_hold_the_same_requests_as_request_lines() -> None:
    data = b"".join(b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", '
                    b'"body": {"model": "m", "messages": []}}\n' % i for i in range(250))
    data += b"\n" + data.replace(b'"r', b'"s')  # a blank line: the precise path, then bulk
    blocks = list(iter_request_blocks([data]))
    flat = [line for block in blocks for line in block.request_lines()]
    assert flat == list(iter_request_lines([data])) and len(flat) == 500
    assert flat[250].line_no == 252

"""Validate+split speed against bare orjson parsing of the same JSONL file (issue 3).

Usage: .venv/bin/python benchmarks/validate_split.py [--lines 200000] [--chunk-kb 1024]

Writes a file of realistic chat requests to a temp dir, then times
  1. baseline: ``for line in f: orjson.loads(line)``
  2. ours: ``split_into_parts(iter_request_lines(chunks))`` over the file read in chunks,
and prints both rates (lines/s, MB/s), the ratio (target >= 0.5) and peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from batchyard.domain.jsonl import iter_request_lines, split_into_parts

WORDS = ("the quick brown fox jumps over a lazy dog while batch requests wait in line for "
         "their turn at the model summarise translate classify extract entities").split()


def make_file(path: Path, n_lines: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    system = "You are a careful assistant. Answer in one short paragraph. " * 3
    with path.open("wb") as f:
        for i in range(n_lines):
            question = " ".join(rng.choices(WORDS, k=rng.randint(40, 110)))
            line = {"custom_id": f"request-{i}", "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "max_tokens": 256, "temperature": 0.2,
                             "messages": [{"role": "system", "content": system},
                                          {"role": "user", "content": question}]}}
            f.write(orjson.dumps(line) + b"\n")
    return path.stat().st_size


def read_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def time_baseline(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - start


def time_ours(path: Path, chunk_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    parts = 0
    lines = iter_request_lines(read_chunks(path, chunk_size), endpoint="/v1/chat/completions",
                               max_requests=10_000_000, max_line_bytes=1 << 20)
    for _part in split_into_parts(lines, max_requests=50_000, max_bytes=200 * 1024 * 1024):
        parts += 1  # the caller would write the part out here; we only keep the count
    return time.perf_counter() - start, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--chunk-kb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        size = make_file(path, args.lines)
        mb = size / 1e6
        # Alternate the two so a noisy neighbour on the machine hits both alike.
        bases, ours_runs = [], []
        for _ in range(args.repeat):
            bases.append(time_baseline(path))
            ours_runs.append(time_ours(path, args.chunk_kb * 1024))
        base = min(bases)
        ours = min(t for t, _ in ours_runs)
        parts = ours_runs[0][1]
    print(f"file: {args.lines:,} lines, {mb:.1f} MB, chunks of {args.chunk_kb} KiB")
    print(f"orjson.loads per line : {args.lines / base:>12,.0f} lines/s {mb / base:8.1f} MB/s")
    print(f"validate + split      : {args.lines / ours:>12,.0f} lines/s {mb / ours:8.1f} MB/s"
          f"  ({parts} parts)")
    print(f"ratio (ours / orjson) : {base / ours:.2f}   (target >= 0.50)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS              : {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

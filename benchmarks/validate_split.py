"""Validate+split speed against bare orjson parsing of the same JSONL file (issue 3).

Usage: .venv/bin/python benchmarks/validate_split.py [--lines 200000] [--words 25 75 300]
       [--chunk-kb 1024] [--repeat 5]

For each ``--words`` (default: 25, 75 and 300, i.e. ~535 B, ~820 B and ~2.1 KB lines),
writes a file of chat requests (a system prompt plus a user question of about that many
words) to a temp dir, then times, alternating runs and keeping the best of each:
  1. baseline: ``for line in f: orjson.loads(line)``
  2. validate only: ``iter_request_lines(chunks)`` over the file read in chunks
  3. validate + split, the pipeline's path (``services.prepare``):
     ``iter_part_blocks(iter_request_blocks(chunks))`` (50,000 requests / 200 MiB parts,
     streamed in column blocks; no object per line, no part in memory)
  4. for reference, the same boundaries over RequestLine objects: ``iter_part_batches``
     (streamed) and ``split_into_parts`` (each part a list in memory); neither is used by
     the pipeline
and prints rates (lines/s, MB/s), the ratios to the baseline (target >= 0.5 for 3) and
the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from batchyard.config import PipelineSettings
from batchyard.domain.jsonl import (
    RequestLine,
    iter_part_batches,
    iter_part_blocks,
    iter_request_blocks,
    iter_request_lines,
    split_into_parts,
)

_PARTS = PipelineSettings()  # the default part limits the pipeline splits by
_ENDPOINT = "/v1/chat/completions"
PIPELINE = "validate + split (pipeline)"

WORDS = ("the quick brown fox jumps over a lazy dog while batch requests wait in line for "
         "their turn at the model summarise translate classify extract entities").split()


def make_file(path: Path, n_lines: int, words: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    system = "You are a careful assistant. Answer in one short paragraph. " * 3
    with path.open("wb") as f:
        for i in range(n_lines):
            question = " ".join(rng.choices(WORDS, k=rng.randint(words // 2, words * 3 // 2)))
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


def baseline(path: Path, _chunk: int) -> None:
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)


def validated(path: Path, chunk: int) -> Iterator[RequestLine]:
    return iter_request_lines(read_chunks(path, chunk), endpoint=_ENDPOINT,
                              max_requests=10_000_000, max_line_bytes=1 << 20)


def validate_only(path: Path, chunk: int) -> None:
    for _line in validated(path, chunk):
        pass


def pipeline_split(path: Path, chunk: int) -> None:
    blocks = iter_request_blocks(read_chunks(path, chunk), endpoint=_ENDPOINT,
                                 max_requests=10_000_000, max_line_bytes=1 << 20)
    for _index, _block in iter_part_blocks(blocks, max_requests=_PARTS.part_max_requests,
                                           max_bytes=_PARTS.part_max_bytes):
        pass  # prepare turns the block into request rows of its part here


def lines_stream_split(path: Path, chunk: int) -> None:
    for _index, _batch in iter_part_batches(validated(path, chunk),
                                            max_requests=_PARTS.part_max_requests,
                                            max_bytes=_PARTS.part_max_bytes):
        pass


def lines_list_split(path: Path, chunk: int) -> None:
    for _part in split_into_parts(validated(path, chunk), max_requests=_PARTS.part_max_requests,
                                  max_bytes=_PARTS.part_max_bytes):
        pass


def measure(words: int, args: argparse.Namespace) -> None:
    runs: dict[str, tuple[Callable[[Path, int], None], list[tuple[float, float]]]] = {
        "orjson.loads per line": (baseline, []),
        "validate only": (validate_only, []),
        PIPELINE: (pipeline_split, []),
        "ref: lines, streamed": (lines_stream_split, []),
        "ref: lines, part lists": (lines_list_split, []),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        mb = make_file(path, args.lines, words) / 1e6
        for _ in range(args.repeat):  # alternate, so a noisy neighbour hits all alike
            for fn, times in runs.values():
                wall, cpu = time.perf_counter(), time.process_time()
                fn(path, args.chunk_kb * 1024)
                times.append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"\nfile: {args.lines:,} lines, {mb:.1f} MB ({mb * 1e6 / args.lines:.0f} B/line), "
          f"chunks of {args.chunk_kb} KiB, best of {args.repeat}")
    base_wall = min(w for w, _ in runs["orjson.loads per line"][1])
    base_cpu = min(c for _, c in runs["orjson.loads per line"][1])
    for name, (_fn, times) in runs.items():
        wall = min(w for w, _ in times)
        cpu = min(c for _, c in times)
        print(f"{name:28s}: {args.lines / wall:>10,.0f} lines/s {mb / wall:7.1f} MB/s"
              f"   ratio wall {base_wall / wall:.2f}  cpu {base_cpu / cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--words", type=int, nargs="+", default=[25, 75, 300],
                        help="average user-message words (one file per value)")
    parser.add_argument("--chunk-kb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs")
    args = parser.parse_args()
    print("ratio = baseline time / this time, on wall-clock and on CPU time (the latter is "
          f"steadier on a shared machine); target for {PIPELINE!r}: >= 0.50")
    for words in args.words:
        measure(words, args)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

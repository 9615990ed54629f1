"""Everything JSONL: validating input files, splitting them into parts, output files.

Everything here works on iterables of ``bytes`` chunks handed in by the caller (an upload
stream, a file store, a download); nothing opens a file. Validation follows the providers'
own rules and error vocabulary (``invalid_json_line``, ``duplicate_custom_id`` ...) so a user
sees the same message they would have got from OpenAI, only before anything is spent.

Input validation lives in :mod:`batchyard.domain.inputs`, output parsing and rendering in
:mod:`batchyard.domain.outputs`; both are re-exported here, so ``batchyard.domain.jsonl`` is
the one import for everything JSONL.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate, islice, repeat

import orjson

from batchyard.domain.inputs import (
    MODEL_OPTIONAL_ENDPOINTS,
    RequestBlock,
    RequestLine,
    estimate_tokens,
    iter_request_blocks,
    iter_request_lines,
    normalize_endpoint,
)
from batchyard.domain.lines import iter_lines
from batchyard.domain.outputs import (
    OutputLine,
    iter_output_blocks,
    iter_output_lines,
    render_result_line,
    rendered_line_length,
    result_line_id,
)
from batchyard.errors import JsonlError

__all__ = [
    "MODEL_OPTIONAL_ENDPOINTS",
    "OutputLine",
    "RequestBlock",
    "RequestLine",
    "estimate_tokens",
    "iter_lines",
    "iter_output_blocks",
    "iter_output_lines",
    "iter_part_batches",
    "iter_part_blocks",
    "iter_request_blocks",
    "iter_request_lines",
    "normalize_endpoint",
    "render_result_line",
    "rendered_line_length",
    "result_line_id",
    "rewrite_model",
    "split_into_parts",
]

#: Lines taken at a time by the splitter: a run that fits the current part is added whole.
_RUN = 256
_n_bytes = operator.attrgetter("n_bytes")


def split_into_parts(lines: Iterable[RequestLine], *, max_requests: int,
                     max_bytes: int) -> Iterator[list[RequestLine]]:
    """Group lines into parts of at most ``max_requests`` lines and ``max_bytes`` bytes.

    Bytes count each line with its newline, as the uploaded part file will hold them. A
    single line that alone exceeds ``max_bytes`` cannot go anywhere: JsonlError.

    Each part is a list held in memory (up to ``max_bytes`` of lines, plus one small object
    per line that the garbage collector keeps walking). :func:`iter_part_batches` draws the
    same boundaries while holding only one batch, and :func:`iter_part_blocks` (what the
    pipeline's prepare step uses) does so over column blocks with no object per line.
    """
    part: list[RequestLine] = []
    current = 0
    # Small batches, so a finished part is handed over as soon as the next one starts
    # (with whole-part batches a third part would be alive while the caller holds one).
    for index, batch in iter_part_batches(lines, max_requests=max_requests,
                                          max_bytes=max_bytes, batch_size=_RUN):
        if index != current:
            yield part
            part, current = [], index
        part += batch
    if part:
        yield part


def iter_part_batches(lines: Iterable[RequestLine], *, max_requests: int, max_bytes: int,
                      batch_size: int = _RUN,
                      line_overhead: int = 0) -> Iterator[tuple[int, list[RequestLine]]]:
    """Yield ``(part_index, batch)``: the parts of :func:`split_into_parts`, streamed.

    ``part_index`` counts from 0. Each batch holds at most ``batch_size`` consecutive lines
    of one part (a batch never spans two parts; a new index starts a new part), so memory
    stays at one batch however big the parts are: a consumer writes or inserts each batch
    as it comes. Batches of a few hundred lines also die young, before the garbage
    collector starts walking them again and again (what makes whole parts slow).

    ``line_overhead`` bytes are counted on top of each line (and its newline) against
    ``max_bytes``: room for a line to grow before upload (:func:`rewrite_model`).
    """
    if max_requests < 1 or max_bytes < 2 or batch_size < 1 or line_overhead < 0:
        raise ValueError("max_requests and batch_size must be >= 1, max_bytes >= 2, "
                         "line_overhead >= 0")
    per_line = 1 + line_overhead
    index, count, size = 0, 0, 0  # the current part: its number, lines and bytes so far
    batch: list[RequestLine] = []
    source = iter(lines)
    while run := list(islice(source, _RUN)):
        run_bytes = sum(map(_n_bytes, run)) + len(run) * per_line
        if count + len(run) <= max_requests and size + run_bytes <= max_bytes:
            batch += run  # the whole run fits in the current part: no per-line work
            count += len(run)
            size += run_bytes
        else:
            for line in run:
                n = line.n_bytes + per_line
                if size + n > max_bytes or count == max_requests:
                    if n > max_bytes:
                        raise JsonlError(f"the request is {n:,} bytes, more than a part may "
                                         f"hold ({max_bytes:,})", line=line.line_no,
                                         code="invalid_request")
                    yield from _pieces(index, batch, batch_size)
                    batch, index, count, size = [], index + 1, 0, 0
                batch.append(line)
                count += 1
                size += n
        if len(batch) >= batch_size:
            yield from _pieces(index, batch[:len(batch) - len(batch) % batch_size], batch_size)
            batch = batch[len(batch) - len(batch) % batch_size:]
    yield from _pieces(index, batch, batch_size)


def iter_part_blocks(blocks: Iterable[RequestBlock], *, max_requests: int, max_bytes: int,
                     line_overhead: int = 0) -> Iterator[tuple[int, RequestBlock]]:
    """:func:`iter_part_batches` for the blocks of :func:`iter_request_blocks`.

    Yields ``(part_index, block)`` with the same part boundaries; each yielded block lies
    within one part (an input block crossing a boundary is cut in two). The cut points are
    found with C-level ``accumulate`` and ``bisect`` over a block's sizes: no Python work
    per line, and nothing held but the block at hand.
    """
    if max_requests < 1 or max_bytes < 2 or line_overhead < 0:
        raise ValueError("max_requests must be >= 1, max_bytes >= 2, line_overhead >= 0")
    per_line = 1 + line_overhead
    index, count, size = 0, 0, 0  # the current part: its number, lines and bytes so far
    for block in blocks:
        start, n = 0, len(block.sizes)
        while start < n:
            stop = min(n, start + max_requests - count)
            ends = list(accumulate(map(operator.add, block.sizes[start:stop],
                                       repeat(per_line))))
            fit = bisect_right(ends, max_bytes - size)  # lines that fit in this part
            if fit:
                yield index, block.cut(start, start + fit)
                count, size, start = count + fit, size + ends[fit - 1], start + fit
                if start == n:
                    break
            elif not count:
                line_no = block.line_nos[start]
                raise JsonlError(f"the request is {ends[0]:,} bytes, more than a part may "
                                 f"hold ({max_bytes:,})", line=line_no, code="invalid_request")
            index, count, size = index + 1, 0, 0  # the part is full: the rest starts a new one


def _pieces(index: int, lines: list[RequestLine],
            size: int) -> Iterator[tuple[int, list[RequestLine]]]:
    for start in range(0, len(lines), size):
        yield index, lines[start:start + size]


def rewrite_model(raw: bytes, model: str) -> bytes:
    """Return the line with ``body.model`` set to ``model`` (e.g. an Azure deployment name)."""
    obj = orjson.loads(raw)
    obj["body"]["model"] = model
    return orjson.dumps(obj)

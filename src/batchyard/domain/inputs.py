"""Validation of batch input lines, as the providers validate them (usually imported
through :mod:`batchyard.domain.jsonl`).

Two paths give the same answers. The *bulk* path checks a run of lines with C-level
operations (``map``, ``zip``, set comparisons) and no Python bytecode per line; it changes
no state unless the whole run is good. Anything it does not like (the first lines of a
file, a blank line, a different url spelling, any error) goes to the *precise* path, which
walks the lines one by one and raises at the first bad one with the provider's error code.
The split exists for speed: validate+split should run at no less than half the speed of
bare ``orjson`` parsing (``benchmarks/validate_split.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from batchyard.domain.lines import iter_line_blocks
from batchyard.errors import JsonlError

_BOM = b"\xef\xbb\xbf"
#: Endpoints whose body may omit ``model`` (the provider picks a default).
MODEL_OPTIONAL_ENDPOINTS = frozenset({"/v1/moderations"})
#: Lines per bulk check. Small enough that the parsed bodies held at once stay under the
#: garbage collector's first threshold (700 containers), so they are never promoted.
_BULK = 100
#: Lines up to this size are estimated from their length alone: text dominates them and it
#: costs nothing. Bigger lines are walked, so a base64 image is not taken for 100k tokens.
_WALK_ABOVE = 8192
#: Flat guess for one image/file/audio part (providers charge roughly 85-1,500 per image).
_MEDIA_CHARS = 4 * 1000
_MEDIA_TYPES = frozenset({"image_url", "input_image", "input_file", "file", "input_audio"})


class RequestLine(NamedTuple):
    """One validated request of an input file (immutable).

    ``raw`` is the line exactly as uploaded (no newline, no ``\\r``); ``n_bytes`` is its
    length. ``est_tokens`` is a cheap estimate of the *input* tokens (about 4 bytes per
    token), which is what providers count against the enqueued-token quota.

    A NamedTuple rather than a frozen dataclass on purpose: one is built per input line and
    a frozen dataclass's ``__init__`` alone cost as much as parsing the line. Use
    ``line._replace(raw=...)`` to derive a changed copy.
    """

    line_no: int
    custom_id: str
    method: str
    url: str
    model: str | None
    raw: bytes
    est_tokens: int
    n_bytes: int


@dataclass(frozen=True, slots=True)
class RequestBlock:
    """Consecutive validated requests, column by column (index ``i`` of each is one line).

    What :func:`iter_request_blocks` yields: no object per line, so a splitter and a
    writer handle a run of lines with C-level slicing and zipping, and the garbage collector
    has nothing per line to walk (a NamedTuple per line is tracked and scanned until it
    dies). ``len(block)`` is its number of lines.
    """

    line_nos: Sequence[int]
    custom_ids: Sequence[str]
    urls: Sequence[str]
    models: Sequence[str | None]
    raws: Sequence[bytes]
    est_tokens: Sequence[int]
    sizes: Sequence[int]

    def __len__(self) -> int:
        return len(self.sizes)

    def cut(self, start: int, stop: int) -> RequestBlock:
        """Lines ``start`` to ``stop`` (exclusive) of this block."""
        return RequestBlock(self.line_nos[start:stop], self.custom_ids[start:stop],
                            self.urls[start:stop], self.models[start:stop],
                            self.raws[start:stop], self.est_tokens[start:stop],
                            self.sizes[start:stop])

    def request_lines(self) -> list[RequestLine]:
        """The block as one :class:`RequestLine` per line."""
        return list(map(tuple.__new__, repeat(RequestLine),
                        zip(self.line_nos, self.custom_ids, repeat("POST"), self.urls,
                            self.models, self.raws, self.est_tokens, self.sizes)))


def _block_of(lines: list[RequestLine]) -> RequestBlock:
    numbers, ids, _methods, urls, models, raws, estimates, sizes = zip(*lines, strict=True)
    return RequestBlock(numbers, ids, urls, models, raws, estimates, sizes)


_fields = operator.itemgetter("custom_id", "method", "url", "body")
_model_of = operator.itemgetter("model")
_ONLY_POST = {"POST"}
_ONLY_STR = {str}
_ONLY_DICT = {dict}


def normalize_endpoint(url: str) -> str:
    """``/chat/completions`` and ``/v1/chat/completions`` name the same endpoint (Azure)."""
    url = url.strip().rstrip("/")
    if not url.startswith("/"):
        url = "/" + url
    if not url.startswith("/v1/"):
        url = "/v1" + url
    return url


def estimate_tokens(body: dict[str, Any], n_bytes: int) -> int:
    """Roughly 4 characters per input token; an upper bound for ordinary text lines."""
    if n_bytes <= _WALK_ABOVE:
        return n_bytes // 4
    messages = body.get("messages", body.get("input", body.get("prompt")))
    if type(messages) is str:
        return len(messages) // 4 + 1
    if type(messages) is list:
        return _parts_chars(messages) // 4 + 1
    return n_bytes // 4 + 1  # unknown shape: the whole line is an upper bound


def _parts_chars(parts: list[Any]) -> int:
    """Text characters in a messages/input/content list, media parts at a flat rate."""
    chars = 0
    for part in parts:
        if type(part) is str:
            chars += len(part)
        elif type(part) is dict:
            if part.get("type") in _MEDIA_TYPES:
                chars += _MEDIA_CHARS
                continue
            text = part.get("content", part.get("text"))
            if type(text) is str:
                chars += len(text) + 16  # role and framing
            elif type(text) is list:
                chars += _parts_chars(text)
    return chars


def _invalid(line_no: int, message: str, code: str = "invalid_request") -> JsonlError:
    return JsonlError(message, line=line_no, code=code)


#: The one character no database text column takes (PostgreSQL refuses it outright).
_NUL = "\x00"


def _unstorable(line_no: int, field: str) -> JsonlError:
    return _invalid(line_no, f"{field} contains a NUL character (\\u0000), which cannot be "
                             "stored", "invalid_text")


def _load(line_no: int, line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        if line_no == 1 and line.startswith(_BOM):
            raise _invalid(1, "the file starts with a UTF-8 byte order mark (BOM); save it "
                              "as UTF-8 without BOM", "invalid_json_line") from None
        raise _invalid(line_no, "this line is not parseable as valid JSON",
                       "invalid_json_line") from None


def _check_shape(line_no: int, obj: Any) -> None:
    if type(obj) is not dict:
        raise _invalid(line_no, "a line must be a JSON object")
    custom_id = obj.get("custom_id")
    if type(custom_id) is not str or not custom_id:
        raise _invalid(line_no, "custom_id must be a non-empty string")
    if _NUL in custom_id:
        raise _unstorable(line_no, "custom_id")
    method = obj.get("method")
    if method != "POST":
        raise _invalid(line_no, f'method must be "POST", not {method!r}')
    url = obj.get("url")
    if type(url) is not str or not url:
        raise _invalid(line_no, "url is missing")
    if type(obj.get("body")) is not dict:
        raise _invalid(line_no, "body must be a JSON object")


class _Validator:
    """The cross-line state (ids seen, the url and model in force) and both paths."""

    __slots__ = ("endpoint", "max_requests", "model", "model_line", "runs", "seen", "url",
                 "url_norm")

    def __init__(self, endpoint: str | None, max_requests: int | None) -> None:
        self.endpoint = normalize_endpoint(endpoint) if endpoint else None
        self.max_requests = max_requests
        # Every custom_id so far. A set, not a dict of line numbers: inserting 2-tuples was
        # a third of the bulk path's time. The first line of an id, needed only for the
        # duplicate message, is found in ``runs``: (ids, line of the first) per run of lines.
        self.seen: set[str] = set()
        self.runs: list[tuple[tuple[str, ...], int]] = []
        self.url: str | None = None
        self.url_norm: str | None = None
        self.model: str | None = None
        self.model_line = 0

    # -- the precise path ---------------------------------------------------------------

    def line(self, line_no: int, line: bytes) -> RequestLine | None:
        """Validate one line (``None`` for a blank one); raise the provider's error."""
        if not line or line.isspace():
            return None
        obj = _load(line_no, line)
        _check_shape(line_no, obj)
        custom_id, url, body = obj["custom_id"], obj["url"], obj["body"]
        self._check_url(line_no, url)
        model = body.get("model")
        self._check_model(line_no, model)
        self._add_custom_id(line_no, custom_id)
        if url == self.url:
            url = self.url  # one shared str for every line, not one each
        n_bytes = len(line)
        return RequestLine(line_no, custom_id, "POST", url, model, line,
                           estimate_tokens(body, n_bytes), n_bytes)

    def _check_url(self, line_no: int, url: str) -> None:
        norm = normalize_endpoint(url)
        if self.endpoint is not None and norm != self.endpoint:
            raise _invalid(line_no, f'url "{url}" does not match the batch endpoint '
                                    f'"{self.endpoint}"', "url_mismatch")
        if self.url_norm is not None and norm != self.url_norm:
            raise _invalid(line_no, f'url "{url}" differs from the url of the other lines '
                                    f'"{self.url}"', "url_mismatch")
        if self.url is None:
            self.url, self.url_norm = url, norm

    def _check_model(self, line_no: int, model: Any) -> None:
        if model is None:
            if self.url_norm not in MODEL_OPTIONAL_ENDPOINTS:
                raise _invalid(line_no, "body.model is missing")
        elif type(model) is not str or not model:
            raise _invalid(line_no, "body.model must be a non-empty string")
        elif _NUL in model:
            raise _unstorable(line_no, "body.model")
        elif self.model is None:
            self.model, self.model_line = model, line_no
        elif model != self.model:
            raise _invalid(line_no, f'model "{model}" differs from "{self.model}" (line '
                                    f'{self.model_line}); a batch uses one model',
                           "model_mismatch")

    def _add_custom_id(self, line_no: int, custom_id: str) -> None:
        if custom_id in self.seen:
            raise _invalid(line_no, f'custom_id "{custom_id}" is used again (first on line '
                                    f'{self._first_line(custom_id)})', "duplicate_custom_id")
        if self.max_requests is not None and len(self.seen) >= self.max_requests:
            raise JsonlError(f"the file has more than {self.max_requests:,} requests",
                             code="too_many_tasks")
        self.seen.add(custom_id)
        self.runs.append(((custom_id,), line_no))

    def _first_line(self, custom_id: str) -> int:
        for ids, first in self.runs:
            if custom_id in ids:
                return first + ids.index(custom_id)
        raise AssertionError(f"{custom_id!r} is in seen but in no run")  # pragma: no cover

    # -- the bulk path ------------------------------------------------------------------

    def bulk(self, lines: list[bytes], first_no: int) -> RequestBlock | None:
        """Validate a run of lines at C speed, or ``None``: "use the precise path"."""
        url, model, seen = self.url, self.model, self.seen
        if url is None or model is None or b"" in lines:
            return None  # first lines, model-less endpoints, blank lines: precise path
        try:
            custom_ids, methods, urls, bodies = zip(*map(_fields, map(orjson.loads, lines)),
                                                    strict=True)
            if (set(methods) != _ONLY_POST or set(urls) != {url}
                    or set(map(type, custom_ids)) != _ONLY_STR or "" in custom_ids
                    or _NUL in "".join(custom_ids)
                    or set(map(type, bodies)) != _ONLY_DICT
                    or set(map(_model_of, bodies)) != {model}):
                return None
        except (ValueError, KeyError, TypeError):
            return None  # bad JSON or shape: the precise path finds the line and says why
        if not seen.isdisjoint(custom_ids) or (
                self.max_requests is not None
                and len(seen) + len(lines) > self.max_requests):
            return None
        before = len(seen)
        seen.update(custom_ids)
        if len(seen) - before != len(lines):  # a duplicate within this run
            seen.difference_update(custom_ids)  # all were new: this restores the set
            return None
        sizes = list(map(len, lines))
        if max(sizes) <= _WALK_ABOVE:
            estimates = list(map(operator.rshift, sizes, repeat(2)))  # n_bytes // 4
        else:
            estimates = list(map(estimate_tokens, bodies, sizes))
        self.runs.append((custom_ids, first_no))
        n = len(lines)
        return RequestBlock(range(first_no, first_no + n), custom_ids, (url,) * n,
                            (model,) * n, lines, estimates, sizes)


def iter_request_lines(chunks: Iterable[bytes], *, endpoint: str | None = None,
                       max_requests: int | None = None,
                       max_line_bytes: int | None = None) -> Iterator[RequestLine]:
    """Validate an input file as the providers do, yielding one :class:`RequestLine` each.

    Raises :class:`~batchyard.errors.JsonlError` at the first bad line (``.line`` is its
    1-based number, ``.code`` the provider's code: ``invalid_json_line``,
    ``invalid_request``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
    ``too_many_tasks``), or ``empty_file`` at the end when the file holds no request.
    Blank lines are skipped but counted. A UTF-8 BOM is rejected. With ``endpoint``, every
    url must name it (with or without ``/v1``).
    """
    for block in iter_request_blocks(chunks, endpoint=endpoint, max_requests=max_requests,
                                     max_line_bytes=max_line_bytes):
        yield from block.request_lines()


def iter_request_blocks(chunks: Iterable[bytes], *, endpoint: str | None = None,
                        max_requests: int | None = None,
                        max_line_bytes: int | None = None) -> Iterator[RequestBlock]:
    """:func:`iter_request_lines` a run of lines at a time, as columns (the fast path).

    Same checks and errors; blocks hold up to a hundred consecutive requests, never none.
    """
    validator = _Validator(endpoint, max_requests)
    line_no = 0
    for block in iter_line_blocks(chunks, max_line_bytes=max_line_bytes):
        for start in range(0, len(block), _BULK):
            lines = block[start:start + _BULK]
            checked = validator.bulk(lines, line_no + 1)
            if checked is None:
                precise = [request for number, line in enumerate(lines, line_no + 1)
                           if (request := validator.line(number, line)) is not None]
                checked = _block_of(precise) if precise else None
            if checked is not None:
                yield checked
            line_no += len(lines)
    if not validator.seen:
        raise JsonlError("the file contains no requests", code="empty_file")

"""Streaming validation and splitting of batch input files (JSONL).

Everything here works on iterables of ``bytes`` chunks handed in by the caller (an upload
stream, a file store, a download); nothing opens a file. Validation follows the providers'
own rules and error vocabulary (``invalid_json_line``, ``duplicate_custom_id`` ...) so a user
sees the same message they would have got from OpenAI, only before anything is spent.

The per-line hot path is deliberately plain: one ``orjson.loads``, a handful of type checks
and a set/dict lookup. Issue 3 requires validate+split at half the speed of bare orjson
parsing or better (``benchmarks/validate_split.py``).

Output-file parsing and rendering live in :mod:`batchyard.domain.outputs` and are re-exported
here, so ``batchyard.domain.jsonl`` is the one import for everything JSONL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, NoReturn

import orjson

from batchyard.domain.lines import iter_line_blocks, iter_lines
from batchyard.domain.outputs import (
    OutputLine,
    iter_output_lines,
    render_result_line,
    result_line_id,
)
from batchyard.errors import JsonlError

__all__ = [
    "MODEL_OPTIONAL_ENDPOINTS",
    "OutputLine",
    "RequestLine",
    "iter_lines",
    "iter_output_lines",
    "iter_part_lines",
    "iter_request_lines",
    "normalize_endpoint",
    "render_result_line",
    "result_line_id",
    "rewrite_model",
    "split_into_parts",
]

_BOM = b"\xef\xbb\xbf"

#: Endpoints whose body may omit ``model`` (the provider picks a default).
MODEL_OPTIONAL_ENDPOINTS = frozenset({"/v1/moderations"})


class RequestLine(NamedTuple):
    """One validated request of an input file (immutable).

    ``raw`` is the line exactly as uploaded (no newline, no ``\\r``); ``n_bytes`` is its
    length. ``est_tokens`` is a cheap estimate of the *input* tokens (text length / 4 plus a
    little per message), which is what providers count against the enqueued-token quota.

    A NamedTuple rather than a frozen dataclass on purpose: it is built once per input line
    and a frozen dataclass's ``__init__`` alone cost as much as parsing the line; tuples of
    plain values are also dropped from the garbage collector's tracking, which matters when
    a part holds 50,000 of them. Use ``line._replace(raw=...)`` to derive a changed copy.
    """

    line_no: int
    custom_id: str
    method: str
    url: str
    model: str | None
    raw: bytes
    est_tokens: int
    n_bytes: int


def normalize_endpoint(url: str) -> str:
    """``/chat/completions`` and ``/v1/chat/completions`` name the same endpoint (Azure)."""
    url = url.strip().rstrip("/")
    if not url.startswith("/"):
        url = "/" + url
    if not url.startswith("/v1/"):
        url = "/v1" + url
    return url


def _invalid(line_no: int, message: str, code: str = "invalid_request") -> JsonlError:
    return JsonlError(message, line=line_no, code=code)


#: Lines up to this size are estimated from their length alone: text dominates them and it
#: costs nothing. Bigger lines are walked, so a base64 image is not taken for 100k tokens.
_WALK_ABOVE = 8192
#: Flat guess for one image/file/audio part (providers charge roughly 85-1,500 per image).
_MEDIA_CHARS = 4 * 1000
_MEDIA_TYPES = frozenset({"image_url", "input_image", "input_file", "file", "input_audio"})


def estimate_tokens(body: dict[str, Any], n_bytes: int) -> int:
    """Roughly 4 characters per input token; an upper bound for ordinary text lines."""
    if n_bytes <= _WALK_ABOVE:
        return n_bytes // 4 + 1
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


class _Checker:
    """The cross-line rules: unique ids, one url, one model, a request limit."""

    __slots__ = ("endpoint", "max_requests", "model", "model_line", "seen", "url",
                 "url_norm")

    def __init__(self, endpoint: str | None, max_requests: int | None) -> None:
        self.endpoint = normalize_endpoint(endpoint) if endpoint else None
        self.max_requests = max_requests
        self.seen: dict[str, int] = {}
        self.url: str | None = None
        self.url_norm: str | None = None
        self.model: str | None = None
        self.model_line = 0

    def check_url(self, line_no: int, url: str) -> None:
        if url == self.url:
            return
        norm = normalize_endpoint(url)
        if self.endpoint is not None and norm != self.endpoint:
            raise _invalid(line_no, f'url "{url}" does not match the batch endpoint '
                                    f'"{self.endpoint}"', "url_mismatch")
        if self.url_norm is not None and norm != self.url_norm:
            raise _invalid(line_no, f'url "{url}" differs from the url of the other lines '
                                    f'"{self.url}"', "url_mismatch")
        if self.url is None:
            self.url, self.url_norm = url, norm

    def check_model(self, line_no: int, model: str) -> None:
        if self.model is None:
            self.model, self.model_line = model, line_no
        elif model != self.model:
            raise _invalid(line_no, f'model "{model}" differs from "{self.model}" (line '
                                    f'{self.model_line}); a batch uses one model',
                           "model_mismatch")

    def check_custom_id(self, line_no: int, custom_id: str) -> None:
        """Raise if ``custom_id`` was seen on an earlier line, or is one request too many."""
        first = self.seen[custom_id]
        if first != line_no:
            raise _invalid(line_no, f'custom_id "{custom_id}" is used again (first on line '
                                    f'{first})', "duplicate_custom_id")
        if self.max_requests is not None and len(self.seen) > self.max_requests:
            raise JsonlError(f"the file has more than {self.max_requests:,} requests",
                             code="too_many_tasks")


def _check_fields(line_no: int, obj: Any) -> None:
    """Raise the precise error for a line that failed the fast-path shape test."""
    if type(obj) is not dict:
        raise _invalid(line_no, "a line must be a JSON object")
    custom_id = obj.get("custom_id")
    if type(custom_id) is not str or not custom_id:
        raise _invalid(line_no, "custom_id must be a non-empty string")
    method = obj.get("method")
    if method != "POST":
        raise _invalid(line_no, f'method must be "POST", not {method!r}')
    url = obj.get("url")
    if type(url) is not str or not url:
        raise _invalid(line_no, "url is missing")
    if type(obj.get("body")) is not dict:
        raise _invalid(line_no, "body must be a JSON object")


def _check_model(line_no: int, model: Any, checker: _Checker) -> None:
    if model is None:
        if checker.url_norm not in MODEL_OPTIONAL_ENDPOINTS:
            raise _invalid(line_no, "body.model is missing")
    elif type(model) is not str or not model:
        raise _invalid(line_no, "body.model must be a non-empty string")
    else:
        checker.check_model(line_no, model)


def _raise_bad_json(line_no: int, line: bytes) -> NoReturn:
    if line_no == 1 and line.startswith(_BOM):
        raise _invalid(1, "the file starts with a UTF-8 byte order mark (BOM); save it "
                          "as UTF-8 without BOM", "invalid_json_line")
    raise _invalid(line_no, "this line is not parseable as valid JSON", "invalid_json_line")


def iter_request_lines(chunks: Iterable[bytes], *, endpoint: str | None = None,
                       max_requests: int | None = None,
                       max_line_bytes: int | None = None) -> Iterator[RequestLine]:
    """Validate an input file as the providers do, yielding one :class:`RequestLine` each.

    Raises :class:`~batchyard.errors.JsonlError` at the first bad line (``.line`` is its
    1-based number, ``.code`` the provider's code), or ``empty_file`` at the end when the
    file holds no request. Blank lines are skipped but counted. A UTF-8 BOM is rejected.
    """
    checker = _Checker(endpoint, max_requests)
    seen = checker.seen
    too_many = max_requests + 1 if max_requests is not None else -1
    first_url = first_model = None  # local copies of checker.url / .model, for speed
    loads = orjson.loads
    new_tuple = tuple.__new__
    line_no = 0
    # The hot loop: one orjson.loads and a few identity/type tests per line, inlined (a
    # helper call per line is measurable). Anything unusual (first line, a new url or
    # model, any error) drops to the slower, precise checks.
    for block in iter_line_blocks(chunks, max_line_bytes=max_line_bytes):
        for line in block:
            line_no += 1
            if not line:
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                if line.isspace():
                    continue
                _raise_bad_json(line_no, line)
            try:
                custom_id = obj["custom_id"]
                body = obj["body"]
                url = obj["url"]
                method = obj["method"]
            except (KeyError, TypeError):
                _check_fields(line_no, obj)
                raise  # unreachable: _check_fields raised the precise error
            if type(custom_id) is not str or not custom_id or type(body) is not dict \
                    or method != "POST":
                _check_fields(line_no, obj)
            if url == first_url:
                url = first_url  # one shared str for all lines, not one per line
            else:
                _check_fields(line_no, obj)
                checker.check_url(line_no, url)
                first_url = checker.url
            model = body.get("model")
            if model == first_model and model is not None:
                model = first_model
            else:
                _check_model(line_no, model, checker)
                first_model = checker.model
            if custom_id in seen:
                checker.check_custom_id(line_no, custom_id)
            seen[custom_id] = line_no
            if too_many > 0 and len(seen) == too_many:
                checker.check_custom_id(line_no, custom_id)
            n_bytes = len(line)
            est = n_bytes // 4 + 1 if n_bytes <= _WALK_ABOVE else estimate_tokens(body, n_bytes)
            # tuple.__new__ directly: the NamedTuple's __new__ is one more Python call.
            yield new_tuple(RequestLine, (line_no, custom_id, "POST", url, model, line, est,
                                          n_bytes))
    if not seen:
        raise JsonlError("the file contains no requests", code="empty_file")


def _too_big(line: RequestLine, max_bytes: int) -> JsonlError:
    return JsonlError(f"the request is {line.n_bytes + 1:,} bytes, more than a part may hold "
                      f"({max_bytes:,})", line=line.line_no, code="invalid_request")


def _check_bounds(max_requests: int, max_bytes: int) -> None:
    if max_requests < 1 or max_bytes < 2:
        raise ValueError("max_requests must be >= 1 and max_bytes >= 2")


def split_into_parts(lines: Iterable[RequestLine], *, max_requests: int,
                     max_bytes: int) -> Iterator[list[RequestLine]]:
    """Group lines into parts of at most ``max_requests`` lines and ``max_bytes`` bytes.

    Bytes count each line with its newline, as the uploaded part file will hold them. A
    single line that alone exceeds ``max_bytes`` cannot go anywhere: JsonlError. Each part
    is held in memory; :func:`iter_part_lines` draws the same boundaries without that.
    """
    _check_bounds(max_requests, max_bytes)
    part: list[RequestLine] = []
    size = 0
    for line in lines:
        n = line.n_bytes + 1
        if size + n > max_bytes or len(part) == max_requests:
            if n > max_bytes:
                raise _too_big(line, max_bytes)
            if part:
                yield part
            part, size = [], 0
        part.append(line)
        size += n
    if part:
        yield part


def iter_part_lines(lines: Iterable[RequestLine], *, max_requests: int,
                    max_bytes: int) -> Iterator[tuple[int, RequestLine]]:
    """Yield ``(part_index, line)``: the boundaries of :func:`split_into_parts`, streamed.

    ``part_index`` counts from 0 and grows by one at each new part. Nothing is buffered, so
    memory stays flat however big the parts are (a consumer writes each line as it comes).
    """
    _check_bounds(max_requests, max_bytes)
    index, count, size = 0, 0, 0
    for line in lines:
        n = line.n_bytes + 1
        if size + n > max_bytes or count == max_requests:
            if n > max_bytes:
                raise _too_big(line, max_bytes)
            if count:
                index += 1
            count, size = 0, 0
        count += 1
        size += n
        yield index, line


def rewrite_model(raw: bytes, model: str) -> bytes:
    """Return the line with ``body.model`` set to ``model`` (e.g. an Azure deployment name)."""
    obj = orjson.loads(raw)
    obj["body"]["model"] = model
    return orjson.dumps(obj)

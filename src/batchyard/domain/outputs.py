"""Provider output/error files: parse them into results, render our own.

A provider output line is ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"} | null, "error": {"code", "message"} | null}``. Azure omits ``id`` and uses UUID
request ids; both parse the same. Requests the endpoint rejected (4xx/5xx) come with a
``response`` and ``error: null``, so results are classified by ``status_code`` first.

Usually imported through :mod:`batchyard.domain.jsonl`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson

from batchyard.domain.lines import iter_line_blocks
from batchyard.errors import JsonlError

#: Non-HTTP error codes worth another attempt in a new part.
RETRYABLE_ERROR_CODES = frozenset({"batch_expired", "request_timeout"})
#: HTTP statuses worth another attempt (as the providers' own SDKs retry them).
RETRYABLE_STATUS = frozenset({408, 409, 429})


class OutputLine(NamedTuple):
    """One request's result as the provider reported it (a named tuple: immutable, and
    built several times faster than a frozen dataclass; ingest makes one per line).

    ``ok`` means a 2xx response. ``body`` is the response body re-serialised as JSON bytes
    (``None`` for non-HTTP errors). ``error_code``/``error_message`` come from ``error`` for
    non-HTTP failures, or from the error body of a 4xx/5xx. Token counts come from
    ``body.usage`` (chat and responses names both understood), 0 when absent.
    """

    custom_id: str
    ok: bool
    status_code: int | None
    request_id: str | None
    body: bytes | None
    error_code: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    retryable: bool
    line_no: int = 0
    #: Cached input tokens (part of ``input_tokens``) and the model that answered.
    cached_tokens: int = 0
    model: str | None = None
    #: Prompt-cache writes (part of ``input_tokens``; Anthropic prices them apart).
    cache_write_tokens: int = 0
    #: ``rendered_line_length`` of this result in our own file when the parser already
    #: knows it (0: not computed, ask ``rendered_line_length``).
    rendered_bytes: int = 0


def is_retryable(status_code: int | None, error_code: str | None, *,
                 retry_cancelled: bool = False) -> bool:
    """Would another attempt at this request plausibly succeed?"""
    if status_code is not None and not 200 <= status_code < 300:
        return status_code in RETRYABLE_STATUS or status_code >= 500
    if error_code is None:
        return False
    return error_code in RETRYABLE_ERROR_CODES or (
        retry_cancelled and error_code == "batch_cancelled")


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _usage_of(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(input, output, total, cache-read, cache-write) tokens; input includes the cache.

    OpenAI's names (chat and responses), the translated Anthropic usage (which adds
    ``cache_creation_input_tokens``) and Anthropic's own usage (where ``input_tokens``
    leaves the cache reads and writes out) are all understood.
    """
    get = usage.get
    write = get("cache_creation_input_tokens")
    if type(write) is not int:
        write = 0
    out = get("completion_tokens") if "completion_tokens" in usage else get("output_tokens")
    if type(out) is not int:
        out = 0
    if "prompt_tokens" in usage:  # OpenAI's chat names, the common case
        inp = get("prompt_tokens")
        if type(inp) is not int:
            inp = 0
    elif "cache_read_input_tokens" in usage or write:
        cached = _int(get("cache_read_input_tokens"))
        inp = _int(get("input_tokens")) + cached + write
        return inp, out, inp + out, cached, write
    else:
        inp = _int(get("input_tokens"))
    total = get("total_tokens")
    if type(total) is not int or not total:
        total = inp + out
    details = (get("prompt_tokens_details") if "prompt_tokens_details" in usage
               else get("input_tokens_details"))
    cached = 0
    if type(details) is dict:
        cached = _int(details.get("cached_tokens"))
        if not write:
            write = _int(details.get("cache_write_tokens"))
    return inp, out, total, cached, write


def _body_error(body: Any) -> tuple[str | None, str | None]:
    error = body.get("error") if type(body) is dict else None
    if type(error) is not dict:
        return None, None
    code = error.get("code") or error.get("type")
    message = error.get("message")
    return (str(code) if code is not None else None,
            str(message) if message is not None else None)


_new_line = tuple.__new__  # builds an OutputLine from a full tuple at C speed (the 2xx path)


def _parse_output(line_no: int, line: bytes, retry_cancelled: bool) -> OutputLine:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise JsonlError("output line is not valid JSON", line=line_no,
                         code="invalid_json_line") from None
    if type(obj) is not dict:
        raise JsonlError("output line is not a JSON object", line=line_no,
                         code="invalid_output_line")
    custom_id = obj.get("custom_id")
    if type(custom_id) is not str or not custom_id:
        raise JsonlError("output line has no custom_id", line=line_no,
                         code="invalid_output_line")
    response = obj.get("response")
    if type(response) is dict:
        return _from_response(line_no, custom_id, response, retry_cancelled)
    error = obj.get("error")
    if type(error) is not dict:
        raise JsonlError(f'output line for "{custom_id}" has neither response nor error',
                         line=line_no, code="invalid_output_line")
    code = error.get("code")
    code = str(code) if code is not None else "unknown_error"
    message = error.get("message")
    return OutputLine(custom_id, False, None, None, None, code,
                      str(message) if message is not None else None, 0, 0, 0,
                      is_retryable(None, code, retry_cancelled=retry_cancelled), line_no)


def _from_response(line_no: int, custom_id: str, response: dict[str, Any],
                   retry_cancelled: bool) -> OutputLine:
    status = response.get("status_code")
    if type(status) is not int:
        raise JsonlError(f'output line for "{custom_id}" has no integer status_code',
                         line=line_no, code="invalid_output_line")
    request_id = response.get("request_id")
    body = response.get("body")
    if type(body) is dict:
        usage, model = body.get("usage"), body.get("model")
        if type(model) is not str:
            model = None
    else:
        usage = model = None
    inp, out, total, cached, write = (_usage_of(usage) if type(usage) is dict
                                      else (0, 0, 0, 0, 0))
    if 200 <= status < 300:  # the common case first: no error fields to look for
        request_id = str(request_id) if request_id else None
        raw = orjson.dumps(body) if body is not None else None
        return _new_line(OutputLine, (
            custom_id, True, status, request_id, raw, None, None, inp, out, total, False,
            line_no, cached, model, write,
            _line_length(custom_id, status, request_id, len(raw) if raw else 2)))
    code, message = _body_error(body)
    return OutputLine(custom_id, False, status, str(request_id) if request_id else None,
                      orjson.dumps(body) if body is not None else None, code, message,
                      inp, out, total,
                      is_retryable(status, code, retry_cancelled=retry_cancelled), line_no,
                      cached, model, write)


def iter_output_lines(chunks: Iterable[bytes], *,
                      retry_cancelled: bool = False) -> Iterator[OutputLine]:
    """Parse a provider output or error file, streaming, one :class:`OutputLine` per line.

    ``retry_cancelled`` marks ``batch_cancelled`` requests retryable: true when we cancelled
    a provider batch ourselves (e.g. to move work), false when the user cancelled. A
    malformed line raises :class:`~batchyard.errors.JsonlError` with its line number.
    """
    for block in iter_output_blocks(chunks, retry_cancelled=retry_cancelled):
        yield from block


def iter_output_blocks(chunks: Iterable[bytes], *,
                       retry_cancelled: bool = False) -> Iterator[list[OutputLine]]:
    """:func:`iter_output_lines` a block of lines at a time (one per chunk read): no
    per-line generator step for a caller that handles lines in bulk."""
    parse = _parse_output
    line_no = 0
    for lines in iter_line_blocks(chunks):
        first, line_no = line_no + 1, line_no + len(lines)
        yield [parse(n, line, retry_cancelled)
               for n, line in enumerate(lines, first) if line and not line.isspace()]


def result_line_id(batch_id: str, custom_id: str) -> str:
    """A stable ``batch_req_`` id, so re-rendering a file gives identical bytes."""
    digest = hashlib.sha256(f"{batch_id}\x00{custom_id}".encode()).hexdigest()
    return f"batch_req_{digest[:32]}"


#: Bytes of a rendered line around its variable parts: ``{"id":"batch_req_<32 hex>",
#: "custom_id":`` ... ``,"response":{"status_code":`` ... ``,"request_id":`` ... ``,"body":``
#: ... ``},"error":null}`` and the newline.
_RENDERED_FIXED = (len(b'{"id":"batch_req_') + 32 + len(b'","custom_id":')
                   + len(b',"response":{"status_code":') + len(b',"request_id":')
                   + len(b',"body":') + len(b'},"error":null}') + 1)


def rendered_line_length(*, batch_id: str, custom_id: str, status_code: int | None,
                         request_id: str | None = None, body: bytes | None = None,
                         error_code: str | None = None,
                         error_message: str | None = None) -> int:
    """``len(render_result_line(...))`` without rendering: no hash, no re-serialisation of
    the body (ingest stores this length for every row)."""
    if status_code is None or type(status_code) is not int:
        return len(render_result_line(batch_id=batch_id, custom_id=custom_id,
                                      status_code=status_code, request_id=request_id,
                                      body=body, error_code=error_code,
                                      error_message=error_message))
    return _line_length(custom_id, status_code, request_id, len(body) if body else 2)


def _line_length(custom_id: str, status_code: int, request_id: str | None,
                 body_bytes: int) -> int:
    """The length of a rendered line with a response whose body is ``body_bytes`` long."""
    return (_RENDERED_FIXED + len(orjson.dumps(custom_id)) + len(str(status_code))
            + len(orjson.dumps(request_id)) + body_bytes)


def render_result_line(*, batch_id: str, custom_id: str, status_code: int | None,
                       request_id: str | None = None, body: bytes | None = None,
                       error_code: str | None = None,
                       error_message: str | None = None) -> bytes:
    """One line of our own output/error file in OpenAI's shape, newline included.

    With a ``status_code`` the line carries ``response`` (``body`` is embedded verbatim as
    JSON bytes; ``{}`` when absent) and ``error: null``, as OpenAI does even for 4xx.
    Without one it is a non-HTTP error: ``response: null`` and ``error: {code, message}``.
    """
    line: dict[str, Any] = {"id": result_line_id(batch_id, custom_id), "custom_id": custom_id}
    if status_code is not None:
        line["response"] = {"status_code": status_code, "request_id": request_id,
                            "body": orjson.Fragment(body) if body else {}}
        line["error"] = None
    else:
        line["response"] = None
        line["error"] = {"code": error_code, "message": error_message}
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)

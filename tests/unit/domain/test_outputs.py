"""Provider output/error lines parsed into results; our own output lines rendered."""

from __future__ import annotations

import orjson
import pytest

from batchyard.domain.jsonl import (
    OutputLine,
    iter_output_lines,
    render_result_line,
    rendered_line_length,
    result_line_id,
)
from batchyard.domain.outputs import is_retryable
from batchyard.errors import JsonlError

CHAT_BODY = {"id": "chatcmpl-1", "object": "chat.completion",
             "choices": [{"message": {"role": "assistant", "content": "hi"}}],
             "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def parse(*objs: object, **kwargs: bool) -> list[OutputLine]:
    data = b"".join(orjson.dumps(o) + b"\n" for o in objs)
    return list(iter_output_lines([data[:5], data[5:]], **kwargs))


def test_openai_success_line() -> None:
    (line,) = parse({"id": "batch_req_1", "custom_id": "a", "error": None,
                     "response": {"status_code": 200, "request_id": "req_1",
                                  "body": CHAT_BODY}})
    assert line.ok and line.status_code == 200 and line.request_id == "req_1"
    assert orjson.loads(line.body or b"") == CHAT_BODY
    assert (line.input_tokens, line.output_tokens, line.total_tokens) == (11, 7, 18)
    assert not line.retryable and line.error_code is None and line.line_no == 1


def test_azure_line_without_id_and_responses_usage_names() -> None:
    body = {"output": [], "usage": {"input_tokens": 5, "output_tokens": 3}}
    (line,) = parse({"custom_id": "a", "error": None,
                     "response": {"status_code": 200,
                                  "request_id": "7f0c4e5e-0d0b-4b7e-9a51-0d6b5e0e2f11",
                                  "body": body}})
    assert line.ok and line.request_id == "7f0c4e5e-0d0b-4b7e-9a51-0d6b5e0e2f11"
    assert (line.input_tokens, line.output_tokens, line.total_tokens) == (5, 3, 8)


def test_native_anthropic_usage_counts_the_cache_into_the_input() -> None:
    # A /v1/messages line: Anthropic's input_tokens leaves cache reads and writes out.
    body = {"type": "message", "content": [], "usage": {
        "input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 50}}
    (line,) = parse({"custom_id": "a", "error": None,
                     "response": {"status_code": 200, "request_id": None, "body": body}})
    assert (line.input_tokens, line.output_tokens, line.total_tokens) == (360, 4, 364)
    assert (line.cached_tokens, line.cache_write_tokens) == (300, 50)
    # OpenAI usage carries no cache writes.
    (plain,) = parse({"custom_id": "b", "error": None,
                      "response": {"status_code": 200, "body": CHAT_BODY}})
    assert (plain.cached_tokens, plain.cache_write_tokens) == (0, 0)


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (404, False), (408, True), (409, True), (422, False),
    (429, True), (500, True), (503, True)])
def test_http_errors_are_classified_by_status_code(status: int, retryable: bool) -> None:
    body = {"error": {"message": "bad thing", "type": "invalid_request_error",
                      "param": None, "code": "bad_code"}}
    (line,) = parse({"id": "x", "custom_id": "a", "error": None,
                     "response": {"status_code": status, "request_id": "r", "body": body}})
    assert not line.ok and line.status_code == status
    assert (line.error_code, line.error_message) == ("bad_code", "bad thing")
    assert line.retryable is retryable


def test_error_body_without_code_falls_back_to_type() -> None:
    body = {"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}
    (line,) = parse({"custom_id": "a", "response": {"status_code": 429, "body": body}})
    assert line.error_code == "rate_limit_error" and line.request_id is None


@pytest.mark.parametrize(("code", "retry_cancelled", "retryable"), [
    ("batch_expired", False, True), ("request_timeout", False, True),
    ("batch_cancelled", False, False), ("batch_cancelled", True, True),
    ("something_else", True, False)])
def test_non_http_errors(code: str, retry_cancelled: bool, retryable: bool) -> None:
    (line,) = parse({"id": "x", "custom_id": "a", "response": None,
                     "error": {"code": code, "message": "why"}},
                    retry_cancelled=retry_cancelled)
    assert not line.ok and line.status_code is None and line.body is None
    assert (line.error_code, line.error_message, line.retryable) == (code, "why", retryable)


def test_is_retryable_treats_2xx_as_done() -> None:
    assert not is_retryable(200, None)
    assert not is_retryable(None, None)


@pytest.mark.parametrize(("raw", "code"), [
    (b"{broken", "invalid_json_line"),
    (b"[]", "invalid_output_line"),
    (b'{"response": null, "error": {"code": "x"}}', "invalid_output_line"),
    (b'{"custom_id": "a", "response": null, "error": null}', "invalid_output_line"),
    (b'{"custom_id": "a", "response": {"status_code": "200"}}', "invalid_output_line"),
])
def test_malformed_output_lines_raise_with_line_numbers(raw: bytes, code: str) -> None:
    good = orjson.dumps({"custom_id": "ok", "response": {"status_code": 200, "body": {}}})
    with pytest.raises(JsonlError) as info:
        list(iter_output_lines([good + b"\n\n" + raw + b"\n"]))
    assert (info.value.line, info.value.code) == (3, code)


def test_rendered_success_line_round_trips_through_the_parser() -> None:
    body = orjson.dumps(CHAT_BODY)
    rendered = render_result_line(batch_id="batch_1", custom_id="a", status_code=200,
                                  request_id="req_1", body=body)
    assert rendered.endswith(b"\n") and rendered.count(b"\n") == 1
    obj = orjson.loads(rendered)
    assert obj["id"] == result_line_id("batch_1", "a") and obj["id"].startswith("batch_req_")
    assert obj["error"] is None and obj["response"]["body"] == CHAT_BODY
    (line,) = iter_output_lines([rendered])
    assert line.ok and line.total_tokens == 18 and line.request_id == "req_1"


def test_rendered_error_line_has_null_response() -> None:
    rendered = render_result_line(batch_id="b", custom_id="c", status_code=None,
                                  error_code="batch_expired", error_message="too late")
    obj = orjson.loads(rendered)
    assert obj["response"] is None
    assert obj["error"] == {"code": "batch_expired", "message": "too late"}


def test_rendering_is_stable_and_ids_differ_per_batch_and_request() -> None:
    args = {"custom_id": "a", "status_code": 400, "body": b'{"error":{"message":"no"}}'}
    assert render_result_line(batch_id="b1", **args) == render_result_line(  # type: ignore[arg-type]
        batch_id="b1", **args)  # type: ignore[arg-type]
    ids = {result_line_id(b, c) for b in ("b1", "b2") for c in ("a", "b")}
    assert len(ids) == 4


@pytest.mark.parametrize("args", [
    {"custom_id": "a", "status_code": 200, "request_id": "req_1",
     "body": orjson.dumps(CHAT_BODY)},
    {"custom_id": 'é"\\ \n\u2028', "status_code": 404, "request_id": None, "body": None},
    {"custom_id": "c", "status_code": 500, "request_id": "r\"q", "body": b"{}"},
    {"custom_id": "c", "status_code": None, "error_code": "batch_expired",
     "error_message": "too \"late\""},
])
def test_rendered_length_matches_the_rendered_line(args: dict) -> None:
    assert rendered_line_length(batch_id="batch_xyz", **args) == len(
        render_result_line(batch_id="batch_xyz", **args))


# -- every usage shape parses as _from_response reads it, with the real rendered length ------

_USAGES = [
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
     "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}},
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
     "prompt_tokens_details": {"cached_tokens": "4", "cache_write_tokens": 3}},
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 0},
    {"prompt_tokens": 11, "completion_tokens": None, "output_tokens": 5, "total_tokens": 18},
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
     "cache_creation_input_tokens": 2},
    {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
     "prompt_tokens_details": None, "input_tokens_details": {"cached_tokens": 5}},
    {"prompt_tokens": True, "completion_tokens": 7, "total_tokens": 18},
    {"input_tokens": 5, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 1}},
]


@pytest.mark.parametrize("usage", _USAGES)
def test_the_inline_answer_path_equals_the_general_one(usage: dict) -> None:
    from batchyard.domain import outputs

    body = {**CHAT_BODY, "model": "gpt-4o-mini", "usage": usage}
    raw = orjson.dumps({"id": "x", "custom_id": "é\"1", "error": None,
                        "response": {"status_code": 200, "request_id": 7, "body": body}})
    fast = outputs._parse_output(3, raw, False)
    general = outputs._from_response(3, "é\"1", orjson.loads(raw)["response"], False)
    assert fast[:15] == general[:15]
    assert all(type(a) is type(b) for a, b in zip(fast[:15], general[:15], strict=True))
    # When the parser knows the rendered length it is the real one.
    assert fast.rendered_bytes in (0, len(render_result_line(
        batch_id="b", custom_id=fast.custom_id, status_code=fast.status_code,
        request_id=fast.request_id, body=fast.body)))


def test_answers_carry_their_rendered_length() -> None:
    (line,) = parse({"custom_id": "a", "error": None,
                     "response": {"status_code": 200, "request_id": "req\\1", "body": CHAT_BODY}})
    assert line.rendered_bytes == rendered_line_length(
        batch_id="any", custom_id="a", status_code=200, request_id="req\\1", body=line.body)


def test_blocks_hold_every_line_with_its_file_line_number() -> None:
    from batchyard.domain.jsonl import iter_output_blocks

    lines = [orjson.dumps({"custom_id": f"c{i}", "response": {"status_code": 200,
                                                               "body": CHAT_BODY}})
             for i in range(5)]
    data = lines[0] + b"\n\n" + b"\n".join(lines[1:]) + b"\n  \n"
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]
    blocks = list(iter_output_blocks(chunks))
    assert len(blocks) > 1
    flat = [line for block in blocks for line in block]
    assert [(x.custom_id, x.line_no) for x in flat] == [
        ("c0", 1), ("c1", 3), ("c2", 4), ("c3", 5), ("c4", 6)]
    assert flat == list(iter_output_lines(chunks))

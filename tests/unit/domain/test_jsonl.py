"""Input JSONL: streaming validation with the providers' error codes, splitting, rewriting."""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson
import pytest

from batchyard.domain.jsonl import (
    RequestLine,
    iter_lines,
    iter_part_lines,
    iter_request_lines,
    normalize_endpoint,
    rewrite_model,
    split_into_parts,
)
from batchyard.errors import JsonlError


def req(custom_id: str, *, model: str = "gpt-4o-mini", url: str = "/v1/chat/completions",
        content: str = "hello", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"model": model,
                               "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(*objs: object) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def validate(data: bytes, **kwargs: object) -> list[RequestLine]:
    return list(iter_request_lines([data], **kwargs))  # type: ignore[arg-type]


def error_of(data: bytes, **kwargs: object) -> JsonlError:
    with pytest.raises(JsonlError) as info:
        validate(data, **kwargs)
    return info.value


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_lines_spanning_chunks_parse_the_same_at_any_chunk_size(size: int) -> None:
    data = jsonl(*(req(f"r{i}", content="x" * i) for i in range(20)))
    lines = list(iter_request_lines(chunked(data, size)))
    assert [line.custom_id for line in lines] == [f"r{i}" for i in range(20)]
    assert [line.line_no for line in lines] == list(range(1, 21))
    assert b"\n".join(line.raw for line in lines) + b"\n" == data


def test_crlf_blank_lines_and_a_last_line_without_newline() -> None:
    a, b, c = (orjson.dumps(req(x)) for x in "abc")
    data = a + b"\r\n\r\n" + b + b"\r\n   \n" + c
    lines = validate(data)
    assert [(line.line_no, line.custom_id) for line in lines] == [(1, "a"), (3, "b"), (5, "c")]
    assert lines[0].raw == a and lines[0].n_bytes == len(a)
    assert lines[2].raw == c


def test_request_line_carries_method_url_model_and_a_token_estimate() -> None:
    short, long = validate(jsonl(req("s", content="hi"), req("l", content="word " * 400)))
    assert (short.method, short.url, short.model) == ("POST", "/v1/chat/completions",
                                                      "gpt-4o-mini")
    assert 400 <= long.est_tokens <= 1000
    assert short.est_tokens < long.est_tokens


def test_token_estimate_of_big_lines_reads_text_and_counts_images_flat() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 400_000}}
    with_image = req("p")
    with_image["body"]["messages"] = [  # type: ignore[index]
        {"role": "user", "content": [{"type": "text", "text": "y" * 40_000}, image]}]
    responses = {"custom_id": "r", "method": "POST", "url": "/v1/responses",
                 "body": {"model": "m", "input": "z" * 40_000}}
    (p,) = validate(jsonl(with_image))
    (r,) = validate(jsonl(responses))
    assert 10_000 < p.est_tokens < 12_000  # 10k of text + a flat 1k for the image
    assert 10_000 <= r.est_tokens < 10_100
    assert p.n_bytes > 400_000


def test_bom_is_rejected_with_a_clear_message() -> None:
    err = error_of(b"\xef\xbb\xbf" + jsonl(req("a")))
    assert err.line == 1 and "byte order mark" in str(err)


@pytest.mark.parametrize(("line", "code", "fragment"), [
    (b"{not json", "invalid_json_line", "not parseable"),
    (b"[1, 2]", "invalid_request", "JSON object"),
    (orjson.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
     "invalid_request", "custom_id"),
    (orjson.dumps({**req("x"), "custom_id": ""}), "invalid_request", "custom_id"),
    (orjson.dumps({**req("x"), "custom_id": 7}), "invalid_request", "custom_id"),
    (orjson.dumps({**req("x"), "method": "GET"}), "invalid_request", "POST"),
    (orjson.dumps({**req("x"), "url": None}), "invalid_request", "url"),
    (orjson.dumps({**req("x"), "body": "text"}), "invalid_request", "body"),
    (orjson.dumps({**req("x"), "body": {"messages": []}}), "invalid_request", "body.model"),
    (orjson.dumps({**req("x"), "body": {"model": 3}}), "invalid_request", "body.model"),
])
def test_first_bad_line_is_reported_with_its_number_and_code(
        line: bytes, code: str, fragment: str) -> None:
    data = jsonl(req("a"), req("b")) + b"\n" + line + b"\n" + b"{also bad\n"
    err = error_of(data)
    assert (err.line, err.code) == (4, code)
    assert str(err).startswith("line 4: ") and fragment in str(err)


def test_moderations_may_omit_model() -> None:
    line = {"custom_id": "m", "method": "POST", "url": "/v1/moderations",
            "body": {"input": "text"}}
    (only,) = validate(jsonl(line))
    assert only.model is None


def test_duplicate_custom_id_names_both_lines() -> None:
    err = error_of(jsonl(req("a"), req("b"), req("c"), req("b")))
    assert (err.line, err.code) == (4, "duplicate_custom_id")
    assert str(err) == 'line 4: custom_id "b" is used again (first on line 2)'


def test_url_must_match_the_endpoint_with_or_without_v1() -> None:
    data = jsonl(req("a", url="/chat/completions"), req("b"))
    assert len(validate(data, endpoint="/v1/chat/completions")) == 2
    assert len(validate(data, endpoint="/chat/completions")) == 2
    err = error_of(data, endpoint="/v1/embeddings")
    assert (err.line, err.code) == (1, "url_mismatch")


def test_lines_must_agree_on_url_and_model() -> None:
    err = error_of(jsonl(req("a"), req("b", url="/v1/responses")))
    assert (err.line, err.code) == (2, "url_mismatch")
    err = error_of(jsonl(req("a"), req("b"), req("c", model="gpt-4o")))
    assert (err.line, err.code) == (3, "model_mismatch")
    assert "line 1" in str(err)


def test_too_many_tasks_and_empty_file() -> None:
    data = jsonl(req("a"), req("b"), req("c"))
    assert len(validate(data, max_requests=3)) == 3
    assert error_of(data, max_requests=2).code == "too_many_tasks"
    assert error_of(b"").code == "empty_file"
    assert error_of(b"\n \r\n\n").code == "empty_file"


def test_max_line_bytes_stops_a_giant_line_without_buffering_it() -> None:
    ok = orjson.dumps(req("a"))
    big = orjson.dumps(req("b", content="x" * 5000))
    assert len(validate(ok + b"\n", max_line_bytes=len(ok))) == 1

    def endless() -> Iterator[bytes]:
        yield ok + b"\n"
        while True:  # a line with no end: must fail, not eat memory
            yield b"x" * 1024

    with pytest.raises(JsonlError) as info:
        list(iter_request_lines(endless(), max_line_bytes=len(big) - 1))
    assert info.value.line == 2
    err = error_of(ok + b"\n" + big + b"\n", max_line_bytes=len(big) - 1)
    assert err.line == 2 and "limit" in str(err)


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"a\nb", b"\n\nc\r", b"\n"], [b"a", b"b", b"", b"c"]),
    ([b"a\r", b"\nb\r\n"], [b"a", b"b"]),  # \r\n cut between chunks: still one ending
    ([b"a\n", b"\n", b"b"], [b"a", b"", b"b"]),
    ([b"\n\n"], [b"", b""]),
    ([b"", b"x", b"", b"y"], [b"xy"]),
    ([b"last\r"], [b"last"]),
    ([b"a\rb\nc\r\n"], [b"a\rb", b"c"]),  # a lone \r is not a line break
])
def test_iter_lines_numbers_every_line(chunks: list[bytes], expected: list[bytes]) -> None:
    assert list(iter_lines(chunks)) == list(enumerate(expected, 1))


def test_a_lone_carriage_return_inside_a_json_line_is_whitespace() -> None:
    line = b'{"custom_id": "a",\r"method": "POST", "url": "/v1/chat/completions",' \
           b' "body": {"model": "m"}}'
    (only,) = validate(line + b"\r\n" + b"\n")
    assert only.raw == line and only.line_no == 1


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("/chat/completions") == "/v1/chat/completions"
    assert normalize_endpoint("/v1/chat/completions/") == "/v1/chat/completions"
    assert normalize_endpoint("v1/responses") == "/v1/responses"


def _lines(sizes: list[int]) -> list[RequestLine]:
    return [RequestLine(i + 1, f"r{i}", "POST", "/v1/x", "m", b"x" * n, 1, n)
            for i, n in enumerate(sizes)]


def test_split_respects_both_bounds_and_keeps_order() -> None:
    lines = _lines([10, 10, 10, 30, 5, 5, 5, 5, 5])
    parts = list(split_into_parts(lines, max_requests=3, max_bytes=33))
    assert [[line.custom_id for line in part] for part in parts] == [
        ["r0", "r1", "r2"], ["r3"], ["r4", "r5", "r6"], ["r7", "r8"]]
    for part in parts:
        assert len(part) <= 3 and sum(line.n_bytes + 1 for line in part) <= 33
    assert [line for part in parts for line in part] == lines


def test_split_fills_parts_exactly_to_the_byte_bound() -> None:
    parts = list(split_into_parts(_lines([9, 9, 9]), max_requests=10, max_bytes=20))
    assert [len(part) for part in parts] == [2, 1]


def test_split_rejects_a_line_bigger_than_a_part() -> None:
    with pytest.raises(JsonlError) as info:
        list(split_into_parts(_lines([5, 50]), max_requests=10, max_bytes=50))
    assert info.value.line == 2


def test_split_of_nothing_is_nothing() -> None:
    assert list(split_into_parts([], max_requests=1, max_bytes=10)) == []


def test_rewrite_model_sets_body_model_and_keeps_the_rest() -> None:
    original = req("a", temperature=0.5)
    rewritten = orjson.loads(rewrite_model(orjson.dumps(original), "my-deployment"))
    assert rewritten["body"]["model"] == "my-deployment"
    rewritten["body"]["model"] = original["body"]["model"]  # type: ignore[index]
    assert rewritten == original


@pytest.mark.parametrize(("max_requests", "max_bytes"), [(1, 100), (3, 33), (4, 1000),
                                                         (100, 12), (2, 20)])
def test_streamed_part_boundaries_match_split_into_parts(max_requests: int,
                                                         max_bytes: int) -> None:
    lines = _lines([10, 10, 10, 30, 5, 5, 5, 5, 5, 9, 9, 1])
    lines = [line for line in lines if line.n_bytes < max_bytes]
    parts = list(split_into_parts(lines, max_requests=max_requests, max_bytes=max_bytes))
    streamed = list(iter_part_lines(lines, max_requests=max_requests, max_bytes=max_bytes))
    assert [line for _, line in streamed] == lines
    assert [[line for i, line in streamed if i == k] for k in range(len(parts))] == parts
    assert [i for i, _ in streamed] == sorted(i for i, _ in streamed)


def test_streamed_parts_reject_a_line_bigger_than_a_part() -> None:
    with pytest.raises(JsonlError) as info:
        list(iter_part_lines(_lines([5, 50]), max_requests=10, max_bytes=50))
    assert info.value.line == 2


def test_chunked_line_splitting_matches_a_plain_split_at_random() -> None:
    rng = random.Random(1)
    alphabet = [b"a", b"{", b"\n", b"\r", b"\r\n", b" "]
    for _ in range(3000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        expected = data.split(b"\n")
        if expected[-1] == b"":
            expected.pop()
        expected = [line.removesuffix(b"\r") for line in expected]
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 5))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert [line for _, line in iter_lines(chunks)] == expected, (data, chunks)

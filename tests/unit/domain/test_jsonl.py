"""Input JSONL: streaming validation with the providers' error codes, splitting, rewriting."""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson
import pytest

from batchyard.domain.jsonl import (
    RequestLine,
    iter_lines,
    iter_part_batches,
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


def reference_parts(sizes: list[int], max_requests: int, max_bytes: int) -> list[list[int]]:
    """The splitting rule, one line at a time: close a part when the next line won't fit."""
    parts: list[list[int]] = []
    for i, n in enumerate(sizes):
        if not parts or len(parts[-1]) == max_requests or \
                sum(sizes[j] + 1 for j in parts[-1]) + n + 1 > max_bytes:
            parts.append([])
        parts[-1].append(i)
    return parts


@pytest.mark.parametrize("seed", range(40))
def test_parts_and_streamed_batches_follow_the_rule_at_random(seed: int) -> None:
    rng = random.Random(seed)
    max_bytes = rng.choice([60, 200, 1000, 5000])
    max_requests = rng.choice([1, 3, 7, 100, 300, 1000])
    sizes = [rng.randint(1, max_bytes - 1) if rng.random() < 0.1 else rng.randint(1, 20)
             for _ in range(rng.randint(0, 1500))]
    lines = _lines(sizes)
    expected = [[lines[i] for i in part] for part in reference_parts(sizes, max_requests,
                                                                     max_bytes)]
    assert list(split_into_parts(lines, max_requests=max_requests,
                                 max_bytes=max_bytes)) == expected
    batch_size = rng.choice([1, 5, 64, 1000])
    batches = list(iter_part_batches(iter(lines), max_requests=max_requests,
                                     max_bytes=max_bytes, batch_size=batch_size))
    assert all(0 < len(batch) <= batch_size for _, batch in batches)
    regrouped: list[list[RequestLine]] = []
    for index, batch in batches:
        if index == len(regrouped):
            regrouped.append([])
        assert index == len(regrouped) - 1  # indexes count up by one, never skip
        regrouped[-1] += batch
    assert regrouped == expected


def test_streamed_parts_reject_a_line_bigger_than_a_part() -> None:
    with pytest.raises(JsonlError) as info:
        list(iter_part_batches(_lines([5, 50]), max_requests=10, max_bytes=50))
    assert info.value.line == 2


@pytest.mark.parametrize("kwargs", [{"max_requests": 0, "max_bytes": 10},
                                    {"max_requests": 1, "max_bytes": 1},
                                    {"max_requests": 1, "max_bytes": 10, "batch_size": 0}])
def test_nonsense_bounds_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        list(iter_part_batches(_lines([1]), **kwargs))


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


# ---- long files: the bulk path (runs of 100 lines after the first) must agree with the
# ---- precise per-line path on every line and every error.

def long_file(n: int = 400) -> list[bytes]:
    return [orjson.dumps(req(f"id-{i}", content="text " * (i % 7))) for i in range(n)]


def precise_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchyard.domain import inputs

    monkeypatch.setattr(inputs._Validator, "bulk", lambda self, lines, first_no: None)


@pytest.mark.parametrize("chunk", [100, 4096, 1 << 20])
def test_bulk_and_precise_paths_yield_identical_lines(monkeypatch: pytest.MonkeyPatch,
                                                      chunk: int) -> None:
    from batchyard.domain import inputs

    data = b"\n".join(long_file()) + b"\n"
    bulk_runs: list[int] = []
    real_bulk = inputs._Validator.bulk

    def counting(self: inputs._Validator, lines: list[bytes],
                 first_no: int) -> list[RequestLine] | None:
        result = real_bulk(self, lines, first_no)
        bulk_runs.append(len(result or []))
        return result

    monkeypatch.setattr(inputs._Validator, "bulk", counting)
    fast = list(iter_request_lines(chunked(data, chunk), endpoint="/v1/chat/completions"))
    assert sum(bulk_runs) >= 250  # most lines really went through the bulk path
    precise_only(monkeypatch)
    slow = list(iter_request_lines(chunked(data, chunk), endpoint="/v1/chat/completions"))
    assert fast == slow
    assert [line.line_no for line in fast] == list(range(1, 401))
    assert len({id(line.url) for line in fast}) == 1  # one shared url string


FAULTS: list[tuple[str, object, str]] = [
    ("bad json", b'{"custom_id": "x",', "invalid_json_line"),
    ("not an object", b"[1]", "invalid_request"),
    ("empty id", {**req("x"), "custom_id": ""}, "invalid_request"),
    ("bool id", {**req("x"), "custom_id": True}, "invalid_request"),
    ("no id", {k: v for k, v in req("x").items() if k != "custom_id"}, "invalid_request"),
    ("GET", {**req("x"), "method": "GET"}, "invalid_request"),
    ("list method", {**req("x"), "method": ["POST"]}, "invalid_request"),
    ("other url", req("x", url="/v1/embeddings"), "url_mismatch"),
    ("dict url", {**req("x"), "url": {"a": 1}}, "invalid_request"),
    ("body list", {**req("x"), "body": []}, "invalid_request"),
    ("no model", {**req("x"), "body": {"messages": []}}, "invalid_request"),
    ("other model", req("x", model="gpt-4o"), "model_mismatch"),
    ("dict model", req("x", model={"m": 1}), "invalid_request"),  # type: ignore[arg-type]
    ("dup of early", req("id-3"), "duplicate_custom_id"),
    ("dup of near", req("id-249"), "duplicate_custom_id"),
]


@pytest.mark.parametrize(("name", "fault", "code"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("precise", [False, True], ids=["bulk", "precise"])
def test_faults_deep_in_a_long_file(monkeypatch: pytest.MonkeyPatch, name: str,
                                    fault: object, code: str, precise: bool) -> None:
    if precise:
        precise_only(monkeypatch)
    lines = long_file()
    lines[250] = fault if isinstance(fault, bytes) else orjson.dumps(fault)
    lines[330] = b"{also bad"  # a later error must not win
    with pytest.raises(JsonlError) as info:
        list(iter_request_lines([b"\n".join(lines)], endpoint="/v1/chat/completions"))
    assert (info.value.line, info.value.code) == (251, code)
    if name.startswith("dup"):
        first = 4 if name == "dup of early" else 250
        assert f"first on line {first})" in str(info.value)


def test_blank_and_whitespace_lines_deep_in_a_file_keep_numbering() -> None:
    lines = long_file()
    lines[150] = b""
    lines[260] = b"  \t"
    got = list(iter_request_lines([b"\r\n".join(lines)]))
    assert len(got) == 398
    assert [line.line_no for line in got] == [n for n in range(1, 401) if n not in (151, 261)]


def test_too_many_tasks_deep_in_a_file() -> None:
    data = b"\n".join(long_file())
    assert len(list(iter_request_lines([data], max_requests=400))) == 400
    with pytest.raises(JsonlError) as info:
        list(iter_request_lines([data], max_requests=399))
    assert info.value.code == "too_many_tasks"


def test_equivalent_url_spelling_deep_in_a_file_is_accepted() -> None:
    lines = long_file()
    lines[200] = orjson.dumps(req("late", url="/chat/completions"))
    got = list(iter_request_lines([b"\n".join(lines)], endpoint="/chat/completions"))
    assert len(got) == 400 and got[200].url == "/chat/completions"


def test_big_lines_in_bulk_are_estimated_by_their_text() -> None:
    lines = long_file(250)
    image = {"type": "image_url", "image_url": {"url": "data:," + "A" * 100_000}}
    big = req("big")
    big["body"]["messages"] = [{"role": "user", "content": [image]}]  # type: ignore[index]
    lines[180] = orjson.dumps(big)
    got = list(iter_request_lines([b"\n".join(lines)]))
    assert got[180].n_bytes > 100_000 and got[180].est_tokens < 2_000
    assert got[181].est_tokens == got[181].n_bytes // 4

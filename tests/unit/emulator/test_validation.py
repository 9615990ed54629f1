"""Input validation: each malformed case yields the provider's code and 1-based line."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.emulator.validation import validate_lines

from .conftest import jsonl, request_line


def _validate(data: bytes, *, azure: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    options: dict[str, Any] = {"endpoint": "/v1/chat/completions", "azure": azure,
                               "max_requests": 50_000, **kwargs}
    return validate_lines(data.splitlines(keepends=True), **options).errors


def _first(errors: list[dict[str, Any]]) -> tuple[str, int | None]:
    assert errors, "expected a validation error"
    return errors[0]["code"], errors[0]["line"]


GOOD = request_line("a")

CASES = {
    "invalid json": (jsonl(GOOD, "{not json"), ("invalid_json_line", 2)),
    "not an object": (jsonl(GOOD, "[1, 2]"), ("invalid_request", 2)),
    "missing custom_id": (jsonl({k: v for k, v in request_line("x").items()
                                 if k != "custom_id"}), ("invalid_request", 1)),
    "missing body": (jsonl(GOOD, {"custom_id": "b", "method": "POST",
                                  "url": "/v1/chat/completions"}), ("invalid_request", 2)),
    "method GET": (jsonl(GOOD, GOOD | {"custom_id": "b", "method": "GET"}),
                   ("invalid_request", 2)),
    "missing model": (jsonl(GOOD, request_line("b", body={"messages": []})),
                      ("invalid_request", 2)),
    "duplicate custom_id": (jsonl(GOOD, request_line("b"), request_line("a")),
                            ("duplicate_custom_id", 3)),
    "url mismatch": (jsonl(GOOD, request_line("b", url="/v1/embeddings")),
                     ("url_mismatch", 2)),
    "two models": (jsonl(GOOD, request_line("b"), request_line("c", model="gpt-4o")),
                   ("model_mismatch", 3)),
    "empty file": (b"", ("empty_file", None)),
    "only blank lines": (b"\n\n", ("empty_file", None)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_yields_the_providers_code_and_line(case: str) -> None:
    data, expected = CASES[case]
    assert _first(_validate(data)) == expected


def test_too_many_requests_is_too_many_tasks_without_a_line() -> None:
    errors = _validate(jsonl(*(request_line(f"r{i}") for i in range(4))), max_requests=3)
    assert _first(errors) == ("too_many_tasks", None)
    assert "3" in errors[0]["message"]


def test_unknown_model_is_model_not_found_only_when_models_are_configured() -> None:
    data = jsonl(request_line("a", model="gpt-x"))
    assert _validate(data) == []
    assert _first(_validate(data, known_models=("gpt-4o-mini",))) == ("model_not_found", 1)


def test_invalid_json_message_matches_openai() -> None:
    errors = _validate(b"{oops\n")
    assert errors[0]["message"] == "This line is not parseable as valid JSON."


def test_azure_rejects_a_bom_but_openai_tolerates_it() -> None:
    data = b"\xef\xbb\xbf" + jsonl(GOOD)
    assert _first(_validate(data, azure=True)) == ("invalid_request", 1)
    assert _validate(data) == []


def test_azure_accepts_urls_with_or_without_v1() -> None:
    data = jsonl(request_line("a", url="/chat/completions"), request_line("b"))
    assert _validate(data, azure=True) == []
    assert _first(_validate(data)) == ("url_mismatch", 1)


def test_every_bad_line_is_reported_with_its_own_line_number() -> None:
    data = jsonl("{bad", GOOD, "{bad again", request_line("a"))
    errors = _validate(data)
    assert [(e["code"], e["line"]) for e in errors] == [
        ("invalid_json_line", 1), ("invalid_json_line", 3), ("duplicate_custom_id", 4)]


def test_a_valid_file_counts_requests_and_tokens() -> None:
    result = validate_lines(jsonl(GOOD, request_line("b")).splitlines(keepends=True),
                            endpoint="/v1/chat/completions", azure=False, max_requests=10)
    assert (result.total, result.model, result.errors) == (2, "gpt-4o-mini", [])
    assert result.tokens > 0

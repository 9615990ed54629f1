"""Wire shapes and error rendering, without a database."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest
from pydantic import ValidationError

from batchyard.api.errors import describe_validation_error, render_error
from batchyard.api.wire import CreateBatchBody, batch_object, file_object, list_object
from batchyard.errors import LimitExceededError, NotFoundError


@dataclass(frozen=True)
class _Batch:
    id: str = "batch_1"
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = "file-1"
    completion_window: str = "24h"
    status: str = "validating"
    created_at: int = 100
    request_counts: dict[str, int] = field(default_factory=lambda: {"total": 2, "completed": 1,
                                                                     "failed": 0})
    errors: list[dict[str, object]] | None = None


def test_batch_object_has_every_openai_key() -> None:
    wire = batch_object(_Batch())
    assert set(wire) == {
        "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window",
        "status", "output_file_id", "error_file_id", "created_at", "in_progress_at",
        "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
        "cancelling_at", "cancelled_at", "request_counts", "usage", "metadata", "cost"}
    assert wire["object"] == "batch" and wire["request_counts"]["completed"] == 1
    assert wire["output_file_id"] is None


def test_batch_errors_become_an_openai_list() -> None:
    error = {"code": "invalid_json_line", "message": "bad", "param": None, "line": 3}
    wire = batch_object(_Batch(errors=[error]))
    assert wire["errors"] == {"object": "list", "data": [error]}


def test_file_object_defaults_status_to_processed() -> None:
    wire = file_object({"id": "file-1", "bytes": 3, "created_at": 1, "filename": "a.jsonl",
                        "purpose": "batch", "status": None})
    assert wire["object"] == "file" and wire["status"] == "processed"
    assert wire["expires_at"] is None and "status_details" in wire


def test_an_empty_page_has_null_cursors() -> None:
    assert list_object([], has_more=False) == {"object": "list", "data": [], "first_id": None,
                                               "last_id": None, "has_more": False}
    page = list_object([{"id": "a"}, {"id": "b"}], has_more=True)
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("a", "b", True)


@pytest.mark.parametrize(("metadata", "fragment"), [
    ({f"k{i}": "v" for i in range(17)}, "at most 16"),
    ({"k" * 65: "v"}, "at most 64"),
    ({"k": "v" * 513}, "at most 512"),
])
def test_metadata_limits(metadata: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        CreateBatchBody(input_file_id="f", endpoint="/v1/embeddings", completion_window="24h",
                        metadata=metadata)
    ok = {f"k{i}": "v" * 512 for i in range(16)}
    assert CreateBatchBody(input_file_id="f", endpoint="/v1/embeddings",
                           completion_window="24h", metadata=ok).metadata == ok


def test_validation_errors_read_like_openai() -> None:
    missing = describe_validation_error({"type": "missing", "loc": ("body", "input_file_id")})
    assert missing == ("Missing required parameter: 'input_file_id'.", "input_file_id",
                       "missing_required_parameter")
    literal = describe_validation_error({"type": "literal_error", "loc": ("completion_window",),
                                         "input": "48h", "ctx": {"expected": "'24h'"}})
    assert literal[0] == "Invalid value for 'completion_window': '48h'. Supported values are: " \
                         "'24h'." and literal[2] == "invalid_value"
    bad_query = describe_validation_error({"type": "less_than_equal", "loc": ("query", "limit"),
                                           "msg": "Input should be <= 100"})
    assert bad_query[1] == "limit" and "<= 100" in bad_query[0]


def test_errors_render_by_their_class() -> None:
    response = render_error(NotFoundError("No such Batch object: b", param="batch_id"))
    assert response.status_code == 404
    assert orjson.loads(bytes(response.body)) == {"error": {
        "message": "No such Batch object: b", "type": "invalid_request_error",
        "param": "batch_id", "code": None}}
    limited = render_error(LimitExceededError(code="batch_limit_exceeded"))
    assert limited.status_code == 429
    assert orjson.loads(bytes(limited.body))["error"]["type"] == "requests"

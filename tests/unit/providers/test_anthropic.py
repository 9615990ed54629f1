"""The Anthropic adapter through httpx.MockTransport: the streamed create body, headers,
status normalisation, error mapping and where results are fetched from."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchyard.errors import ProviderRejectedError, ProviderTransientError
from batchyard.providers import ProviderConfig
from batchyard.providers.anthropic import (
    AnthropicClient,
    AnthropicOperations,
    parse_message_batch,
    requests_body,
    requests_body_length,
)
from batchyard.providers.http import SyncExecutor

from .conftest import FAST, Sleeps

CONFIG = ProviderConfig(kind="anthropic", api_key="sk-ant-secret",
                        api_base="http://claude.test/v1")


def client(handler: Any, sleeps: Sleeps | None = None) -> AnthropicClient:
    ops = AnthropicOperations(CONFIG)
    http = httpx.Client(transport=httpx.MockTransport(handler), headers=ops.auth_headers())
    return AnthropicClient(ops, SyncExecutor(http, FAST, sleep=sleeps or Sleeps()))


def batch_json(status: str = "in_progress", **extra: Any) -> dict[str, Any]:
    counts = {"processing": 2, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return {"id": "msgbatch_1", "type": "message_batch", "processing_status": status,
            "request_counts": counts, "created_at": "2025-01-02T03:04:05.123456Z",
            "expires_at": "2025-01-03T03:04:05Z", "ended_at": None,
            "cancel_initiated_at": None, "archived_at": None, "results_url": None, **extra}


def write_requests(tmp_path: Path, count: int, blank_lines: bool = False) -> Path:
    path = tmp_path / "part.jsonl"
    lines = [json.dumps({"custom_id": f"r{n}", "params": {"model": "m", "max_tokens": 5,
                                                          "messages": [{"role": "user",
                                                                        "content": "é" * n}]}})
             for n in range(count)]
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(lines) + "\r\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("count", "blank"), [(1, False), (3, True), (5000, False)])
def test_create_body_is_the_lines_as_one_json_array(tmp_path: Path, count: int,
                                                    blank: bool) -> None:
    path = write_requests(tmp_path, count, blank)
    body = b"".join(requests_body(path))
    parsed = json.loads(body)
    assert [r["custom_id"] for r in parsed["requests"]] == [f"r{n}" for n in range(count)]
    assert requests_body_length(path) == (len(body), count)
    if count == 5000:  # streamed in pieces, not built whole
        assert len(list(requests_body(path))) > 1


def test_create_streams_with_auth_version_and_exact_length(tmp_path: Path) -> None:
    path = write_requests(tmp_path, 50)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        request.read()
        if len(seen) == 1:
            return httpx.Response(529, json={"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}},
                headers={"retry-after": "1", "request-id": "req_1"})
        return httpx.Response(200, json=batch_json())

    sleeps = Sleeps()
    with path.open("rb") as handle:
        batch = client(handler, sleeps).create_batch(handle)
    assert batch.status == "in_progress" and batch.request_counts.total == 2
    assert sleeps.delays == [1.0]
    first, second = seen
    assert str(second.url) == "http://claude.test/v1/messages/batches"
    assert second.headers["x-api-key"] == "sk-ant-secret"
    assert second.headers["anthropic-version"] == "2023-06-01"
    assert int(second.headers["content-length"]) == len(second.content)
    assert "transfer-encoding" not in second.headers
    assert first.content == second.content  # the retry sent the whole body again
    assert len(json.loads(second.content)["requests"]) == 50


def test_errors_keep_type_message_and_request_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"type": "error", "error": {
            "type": "invalid_request_error", "message": "requests: Field required"}},
            headers={"request-id": "req_011abc"})

    with pytest.raises(ProviderRejectedError) as caught:
        client(handler).retrieve_batch("msgbatch_1")
    error = caught.value
    assert (error.status, error.code, error.message, error.request_id) == (
        400, "invalid_request_error", "requests: Field required", "req_011abc")
    assert "sk-ant-secret" not in str(error)


def test_529_exhausting_retries_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(529, json={"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})

    with pytest.raises(ProviderTransientError) as caught:
        client(handler).retrieve_batch("msgbatch_1")
    assert caught.value.status == 529 and caught.value.code == "overloaded_error"


@pytest.mark.parametrize(("extra", "status", "stamp"), [
    ({}, "in_progress", None),
    ({"processing_status": "canceling", "cancel_initiated_at": "2025-01-02T04:00:00Z"},
     "cancelling", None),
    ({"processing_status": "ended", "ended_at": "2025-01-02T05:00:00Z"}, "completed",
     "completed_at"),
    ({"processing_status": "ended", "ended_at": "2025-01-02T05:00:00Z",
      "cancel_initiated_at": "2025-01-02T04:00:00Z"}, "cancelled", "cancelled_at"),
    ({"processing_status": "ended", "ended_at": "2025-01-02T05:00:00Z",
      "request_counts": {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0,
                         "expired": 3}}, "expired", "expired_at"),
])
def test_processing_status_maps_to_the_shared_statuses(
        extra: dict[str, Any], status: str, stamp: str | None) -> None:
    batch = parse_message_batch(batch_json(**extra))
    assert batch.status == status and batch.created_at == 1735787045
    assert batch.expires_at == 1735787045 + 86400
    if stamp:
        assert getattr(batch, stamp) == 1735794000
    if status == "expired":
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (5, 1, 4)


def test_results_follow_results_url_only_on_the_configured_host() -> None:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, content=b'{"custom_id": "a"}\n')

    adapter = client(handler)
    sink = io.BytesIO()
    own = "http://claude.test/v1/messages/batches/msgbatch_1/results"
    assert adapter.download_results("msgbatch_1", sink, own) == 19
    adapter.download_results("msgbatch_1", io.BytesIO(), "http://evil.test/steal")
    assert fetched == [own, own]

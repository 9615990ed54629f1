"""Provider call metrics through the metered transport, driven by httpx.MockTransport."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from prometheus_client import REGISTRY

from batchyard.config import HttpSettings
from batchyard.errors import ProviderTransientError
from batchyard.metrics.asgi import route_label
from batchyard.metrics.transport import operation_of
from batchyard.providers import ProviderConfig, build_provider

HTTP = HttpSettings(max_attempts=3, backoff_initial=0.0, backoff_max=0.0, max_retry_after=0.0)
BATCH = {"id": "batch_1", "object": "batch", "endpoint": "/v1/chat/completions",
         "input_file_id": "file-1", "completion_window": "24h", "status": "validating",
         "created_at": 1}


def _calls(op: str, dep: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("batchyard_provider_calls_total", {
        "operation": op, "deployment": dep, "outcome": outcome})
    return value or 0.0


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("method", "path", "op"), [
    ("POST", "/v1/files", "upload_file"), ("GET", "/v1/files", "list_files"),
    ("GET", "/v1/files/file-1", "retrieve_file"), ("DELETE", "/v1/files/file-1", "delete_file"),
    ("GET", "/v1/files/file-1/content", "download_file"),
    ("POST", "/openai/batches", "create_batch"), ("GET", "/v1/batches", "list_batches"),
    ("GET", "/v1/batches/batch_1", "retrieve_batch"),
    ("POST", "/v1/batches/batch_1/cancel", "cancel_batch"),
    ("GET", "/v1/messages/batches/b1/results", "download_results"),
    ("GET", "/v1/models", "other"),
])
def test_operation_names_come_from_the_url_shape(method: str, path: str, op: str) -> None:
    assert operation_of(method, path) == op


def test_each_attempt_is_counted_with_its_outcome_and_retries_by_reason() -> None:
    dep = f"dep-{uuid.uuid4().hex[:6]}"
    answers = iter([httpx.Response(429, json={"error": {"message": "slow down"}}),
                    httpx.Response(500, json={"error": {"message": "boom"}}),
                    httpx.Response(200, json=BATCH)])
    retries_before = {r: _value("batchyard_provider_retries_total", {"reason": r})
                      for r in ("429", "5xx")}
    transport = httpx.MockTransport(lambda request: next(answers))
    with build_provider(ProviderConfig(kind="openai", api_key=None, api_base="http://p/v1"),
                        HTTP, transport=transport, label=dep) as provider:
        assert provider.retrieve_batch("batch_1").id == "batch_1"
    assert [_calls("retrieve_batch", dep, o) for o in ("429", "5xx", "ok")] == [1, 1, 1]
    for reason in ("429", "5xx"):
        after = _value("batchyard_provider_retries_total", {"reason": reason})
        assert after == retries_before[reason] + 1


def test_timeouts_are_counted_and_bytes_are_counted_both_ways() -> None:
    dep = f"dep-{uuid.uuid4().hex[:6]}"
    payload = b"x" * 1234

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/content"):
            return httpx.Response(200, content=payload)
        raise httpx.ReadTimeout("too slow", request=request)

    config = ProviderConfig(kind="openai", api_key=None, api_base="http://p/v1")
    with build_provider(config, HTTP.model_copy(update={"max_attempts": 2}),
                        transport=httpx.MockTransport(handler), label=dep) as provider:
        with pytest.raises(ProviderTransientError):
            provider.retrieve_batch("batch_1")
        assert provider.download_file("file-1", io.BytesIO()) == len(payload)
        with pytest.raises(ProviderTransientError):
            provider.upload_file(io.BytesIO(b"{}\n" * 10), filename="in.jsonl")
    sent = _value("batchyard_provider_upload_bytes_total", {"deployment": dep})
    assert _calls("retrieve_batch", dep, "timeout") == 2
    assert _calls("upload_file", dep, "timeout") == 2
    assert _value("batchyard_provider_download_bytes_total", {"deployment": dep}) == len(payload)
    assert sent > 2 * 30  # two attempts of a multipart body holding 30 bytes of file


@pytest.mark.parametrize(("scope", "status", "label"), [
    ({"path": "/v1/batches/batch_abc123", "endpoint": object(),
      "path_params": {"batch_id": "batch_abc123"}}, 200, "/v1/batches/{batch_id}"),
    ({"path": "/ui/batches/b1/results.csv", "endpoint": object(),
      "path_params": {"batch_id": "b1", "fmt": "csv"}}, 200, "/ui/batches/{batch_id}/results.csv"),
    ({"path": "/v1/batches/batch_abc123"}, 200, "/v1/batches/{batch_id}"),
    ({"path": "/v1/things/thing_abc123"}, 200, "/v1/things/{id}"),
    ({"path": "/random/junk/123"}, 404, "unmatched"),
])
def test_route_labels_are_templates(scope: dict[str, object], status: int, label: str) -> None:
    assert route_label(scope, status) == label

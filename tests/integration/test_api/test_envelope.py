"""Status codes and OpenAI's error envelope for bad input, unknown routes and wrong keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from batchyard.api.app import create_app
from batchyard.config import ApiSettings, Settings
from batchyard.errors import ConfigError
from batchyard.services.container import build_services
from tests.integration.test_api.conftest import MASTER, Api, auth, jsonl, local_client

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def assert_envelope(response: httpx.Response, status: int, *, param: str | None = None,
                    code: str | None = None, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and isinstance(error["type"], str)
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    assert response.headers["x-request-id"].startswith("req_")
    return error


def test_create_answers_200_validating_without_any_provider(api: Api) -> None:
    # No deployment is configured at all: create must still succeed (no provider call).
    response = api.create_batch(metadata={"key1": "value1"})
    batch = response.json()
    assert response.status_code == 200
    assert (batch["object"], batch["status"], batch["completion_window"]) == (
        "batch", "validating", "24h")
    assert batch["metadata"] == {"key1": "value1"}
    assert batch["expires_at"] == batch["created_at"] + 86_400
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    for key in ("output_file_id", "error_file_id", "in_progress_at", "cancelled_at", "errors"):
        assert key in batch and batch[key] is None
    assert ("prepare", batch["id"]) in api.nudges.sent


def test_upload_answers_a_file_object_and_content_streams_it_back(api: Api) -> None:
    payload = jsonl(5)
    response = api.upload(content=payload)
    body = response.json()
    assert response.status_code == 200
    assert {k: body[k] for k in ("object", "bytes", "filename", "purpose", "status")} == {
        "object": "file", "bytes": len(payload), "filename": "mydata.jsonl",
        "purpose": "batch", "status": "processed"}
    content = api.client.get(f"/v1/files/{body['id']}/content", headers=auth(MASTER))
    assert content.status_code == 200 and content.content == payload


def test_fields_after_the_file_part_still_work(api: Api) -> None:
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"late.jsonl\"\r\n\r\n").encode() + jsonl(2) + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"batch\r\n--{boundary}--\r\n").encode()
    response = api.client.post("/v1/files", content=body, headers={
        **auth(MASTER), "content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200, response.text
    assert (response.json()["filename"], response.json()["bytes"]) == ("late.jsonl",
                                                                      len(jsonl(2)))


@pytest.mark.parametrize(("path", "method", "status"), [
    ("/v1/nope", "GET", 404), ("/v1/batches", "PUT", 405), ("/v1/files/x/y/z", "GET", 404),
])
def test_unknown_routes_answer_in_the_envelope(api: Api, path: str, method: str,
                                               status: int) -> None:
    response = api.client.request(method, path, headers=auth(MASTER))
    assert_envelope(response, status, message=f"Invalid URL ({method} {path})")


def test_missing_and_wrong_keys_are_401(api: Api) -> None:
    missing = api.client.get("/v1/batches")
    assert "didn't provide an API key" in assert_envelope(missing, 401)["message"]
    wrong = api.client.get("/v1/batches", headers=auth("sk-wrong-but-long-enough-1234"))
    error = assert_envelope(wrong, 401, code="invalid_api_key")
    assert "Incorrect API key provided" in error["message"]
    assert "sk-wrong-but-long-enough" not in error["message"]


def test_the_azure_api_key_header_is_accepted(api: Api) -> None:
    response = api.client.get("/azure/v1/batches", headers={"api-key": MASTER})
    assert response.status_code == 200 and response.json()["object"] == "list"


@pytest.mark.parametrize(("change", "param", "code"), [
    ({"input_file_id": None}, "input_file_id", "missing_required_parameter"),
    ({"completion_window": "48h"}, "completion_window", "invalid_value"),
    ({"endpoint": "/v1/assistants"}, "endpoint", "invalid_value"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "invalid_value"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ({"metadata": {"k": "v" * 513}}, "metadata", "invalid_value"),
    ({"metadata": {"k": 5}}, "metadata.k", "invalid_value"),
])
def test_bad_create_bodies_are_400(api: Api, change: dict, param: str, code: str) -> None:
    body = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
            "completion_window": "24h", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.client.post("/v1/batches", headers=auth(MASTER), json=body)
    assert_envelope(response, 400, param=param, code=code)


def test_invalid_json_is_400_whatever_the_content_type(api: Api) -> None:
    # LiteLLM's doc example has a typo ("model: "...) that makes the body invalid JSON.
    broken = b'{"input_file_id": "file-x", "model: "batch-gpt-4o-mini"}'
    response = api.client.post("/v1/batches", headers=auth(MASTER), content=broken)
    assert_envelope(response, 400, code="invalid_json")


def test_a_body_sent_as_form_type_is_still_parsed(api: Api) -> None:
    file_id = api.file_id()
    raw = json.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"})
    response = api.client.post("/v1/batches", content=raw, headers={
        **auth(MASTER), "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["input_file_id"] == file_id


def test_unknown_input_file_is_404(api: Api) -> None:
    response = api.create_batch(file_id="file-doesnotexist")
    error = assert_envelope(response, 404, param="input_file_id")
    assert "file-doesnotexist" in error["message"]


def test_azure_routes_accept_the_endpoint_without_v1(api: Api) -> None:
    assert api.create_batch(prefix="/azure/v1", endpoint="/chat/completions").status_code == 200
    plain = api.create_batch(endpoint="/chat/completions")
    assert_envelope(plain, 400, param="endpoint")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc"])
def test_batch_list_limit_bounds(api: Api, query: str) -> None:
    response = api.client.get(f"/v1/batches?{query}", headers=auth(MASTER))
    assert_envelope(response, 400, param="limit")


def test_file_list_limit_bounds(api: Api) -> None:
    assert_envelope(api.client.get("/v1/files?limit=10001", headers=auth(MASTER)), 400,
                    param="limit")
    assert api.client.get("/v1/files?limit=10000", headers=auth(MASTER)).status_code == 200


def test_batch_upload_must_be_jsonl(api: Api) -> None:
    response = api.upload(filename="data.csv")
    assert_envelope(response, 400, message="Invalid file format for Batch API. Must be .jsonl")


@pytest.mark.parametrize(("purpose", "code"), [("", "missing_required_parameter"),
                                               ("nonsense", "invalid_value")])
def test_upload_purpose_is_checked(api: Api, purpose: str, code: str) -> None:
    assert_envelope(api.upload(purpose=purpose), 400, param="purpose", code=code)


def test_upload_expiry_fields_as_the_sdk_sends_them(api: Api) -> None:
    fields = {"purpose": "batch", "expires_after[anchor]": "created_at",
              "expires_after[seconds]": "3600"}
    ok = api.client.post("/v1/files", headers=auth(MASTER), data=fields,
                         files={"file": ("e.jsonl", jsonl(1))})
    assert ok.status_code == 200 and ok.json()["expires_at"] == ok.json()["created_at"] + 3600
    fields["expires_after[seconds]"] = "60"
    short = api.client.post("/v1/files", headers=auth(MASTER), data=fields,
                            files={"file": ("e.jsonl", jsonl(1))})
    assert_envelope(short, 400, param="expires_after.seconds", code="invalid_value")


def test_upload_without_a_file_is_400(api: Api) -> None:
    response = api.client.post("/v1/files", headers=auth(MASTER), data={"purpose": "batch"},
                               files={"other": ("x.txt", b"x")})
    assert_envelope(response, 400, param="file", code="missing_required_parameter")


def test_upload_that_is_not_multipart_is_400(api: Api) -> None:
    response = api.client.post("/v1/files", headers=auth(MASTER), json={"purpose": "batch"})
    assert_envelope(response, 400, code="invalid_content_type")


def test_an_upload_over_the_server_limit_is_413(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api=ApiSettings(max_upload_bytes=1000))
    services = build_services(settings, nudge=lambda *_: None)
    try:
        with local_client(create_app(settings, services)) as client:
            response = client.post("/v1/files", headers=auth(MASTER), data={"purpose": "batch"},
                                   files={"file": ("big.jsonl", jsonl(40))})
            error = assert_envelope(response, 413, param="file", code="file_too_large")
            assert "1000 bytes" in error["message"]
            # Over the limit by its declared length: refused before the body is stored.
            huge = client.post("/v1/files", headers=auth(MASTER), data={"purpose": "batch"},
                               files={"file": ("huge.jsonl", b"x" * (2 * 1024 * 1024))})
            assert_envelope(huge, 413, param="file", code="file_too_large")
            listed = client.get("/v1/files?purpose=batch", headers=auth(MASTER)).json()["data"]
            assert not {"big.jsonl", "huge.jsonl"} & {f["filename"] for f in listed}
    finally:
        services.close()


def test_keyless_mode_serves_loopback_only(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(master_key=None)
    services = build_services(settings, nudge=lambda *_: None)
    try:
        app = create_app(settings, services)
        with local_client(app) as client:
            assert client.get("/v1/batches").status_code == 200
        with local_client(app, host="10.1.2.3") as client:
            assert_envelope(client.get("/v1/batches"), 401)
    finally:
        services.close()


def test_keyless_mode_refuses_a_public_bind(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(master_key=None, api=ApiSettings(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="without a master key"):
        create_app(settings)
    keyed = make_settings(master_key=SecretStr(MASTER), api=ApiSettings(host="0.0.0.0"))
    assert create_app(keyed).title == "batchyard"


@pytest.mark.parametrize(("prefix", "provider"), [
    ("/v1", None), ("", None), ("/openai/v1", "openai"), ("/openai", "openai"),
    ("/azure/v1", "azure"), ("/azure", "azure"),
])
def test_the_route_prefix_forces_the_provider(api: Api, prefix: str,
                                              provider: str | None) -> None:
    from batchyard.db.models import BatchRow

    created = api.create_batch(prefix=prefix, model="some-group")
    assert created.status_code == 200, created.text
    with api.services.sessions() as session:
        row = session.get(BatchRow, created.json()["id"])
    assert row is not None and (row.provider, row.model) == (provider, "some-group")

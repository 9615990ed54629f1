"""The served OpenAPI document and the 405 answers match what the routes do."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from batchyard.api.app import create_app
from batchyard.config import Settings


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings(), services=object())


def test_bodies_read_by_hand_are_documented(app: Any) -> None:
    paths = app.openapi()["paths"]
    upload = paths["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["required"] == ["file", "purpose"]
    for path in ("/v1/batches", "/admin/keys"):
        body = paths[path]["post"]["requestBody"]
        assert body["required"] and "$ref" in body["content"]["application/json"]["schema"]


def test_no_operation_documents_a_422_and_errors_use_the_envelope(app: Any) -> None:
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if not path.startswith("/health"):
                assert {"400", "401"} <= set(operation["responses"]), (method, path)
    batches = app.openapi()["paths"]["/v1/batches"]["post"]["responses"]
    assert {"404", "429"} <= set(batches)
    assert batches["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", "/v1/batches", "GET, POST"),
    ("PUT", "/v1/files/file-1", "DELETE, GET"),
    ("DELETE", "/azure/openai/batches/batch_1", "GET"),
    ("PATCH", "/admin/keys", "GET, POST"),
    ("POST", "/health", "GET"),
])
def test_a_405_names_every_method_of_the_path(app: Any, method: str, path: str,
                                              allow: str) -> None:
    response = TestClient(app).request(method, path)
    assert response.status_code == 405
    assert response.headers.get_list("allow") == [allow]
    assert response.json()["error"]["type"] == "invalid_request_error"

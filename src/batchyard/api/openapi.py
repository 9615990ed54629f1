"""The served OpenAPI document, made to tell the truth about the API.

Some routes read their bodies themselves (a streamed multipart upload, JSON parsed with
orjson for the hot create), so FastAPI cannot see them; and FastAPI documents a 422 that the
API never sends (validation errors are answered 400, as OpenAI does). This module adds the
request bodies, the error responses each operation really gives, in OpenAI's envelope, and
the two ways to present a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from batchyard.api.costs import KeyBudgetBody
from batchyard.api.wire import (
    BATCH_ENDPOINTS,
    FILE_PURPOSES,
    METADATA_MAX_KEY,
    METADATA_MAX_PAIRS,
    METADATA_MAX_VALUE,
    CreateBatchBody,
    CreateKeyBody,
)
from batchyard.services.costs import GROUPS as COST_GROUPS

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]},
                       "code": {"type": ["string", "null"]}}}},
}
REASONS = {400: "Invalid request (OpenAI's error envelope)", 401: "Missing or wrong API key",
           403: "The key may not do this", 404: "No such object",
           408: "The request body did not arrive in time",
           413: "The upload is too large", 429: "The key's limit is reached",
           503: "Not ready"}

#: (method, path) -> error statuses besides the 400 and 401 every authenticated call can give.
EXTRA_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/batches"): (404, 408, 429),
    ("get", "/v1/batches/{batch_id}"): (404,),
    ("post", "/v1/batches/{batch_id}/cancel"): (404,),
    ("get", "/v1/batches/{batch_id}/parts"): (404,),
    ("post", "/v1/files"): (408, 413),
    ("get", "/v1/files/{file_id}"): (404,),
    ("delete", "/v1/files/{file_id}"): (404,),
    ("get", "/v1/files/{file_id}/content"): (404,),
    ("post", "/admin/keys"): (403, 408),
    ("get", "/admin/keys"): (403,),
    ("delete", "/admin/keys/{key_id}"): (403, 404),
    ("get", "/health/deployments"): (403,),
    ("get", "/admin/costs"): (403,),
    ("get", "/admin/costs/requests"): (403, 404),
    ("post", "/admin/keys/{key_id}/budget"): (403, 404),
}
#: Paths answered without a key.
OPEN_PATHS = ("/health", "/health/liveness", "/health/liveliness", "/health/readiness")

UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "The file; for purpose 'batch' a .jsonl of requests."},
        "purpose": {"type": "string", "enum": list(FILE_PURPOSES)},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
    },
}


#: What the API can store: any text without the NUL character.
STORABLE_TEXT = "^[^\u0000]*$"


def forbid_nul(node: Any) -> None:
    """Give every string schema under ``node`` (without a pattern or enum) the no-NUL pattern."""
    if isinstance(node, list):
        for item in node:
            forbid_nul(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and "enum" not in node and "format" not in node:
        node.setdefault("pattern", STORABLE_TEXT)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"].setdefault("type", "string")
    for key, value in node.items():
        if key != "pattern":
            forbid_nul(value)


def _json_body(model: Any) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model}}}


def _add_bodies(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["CreateBatchBody"] = CreateBatchBody.model_json_schema(
        ref_template="#/components/schemas/{model}")
    components["CreateKeyBody"] = CreateKeyBody.model_json_schema(
        ref_template="#/components/schemas/{model}")
    # The documented (/v1) routes take OpenAI's endpoints; /azure ones also take Azure's.
    batch_fields = components["CreateBatchBody"]["properties"]
    batch_fields["endpoint"]["enum"] = list(BATCH_ENDPOINTS)
    batch_fields["metadata"]["anyOf"][0].update({
        "maxProperties": METADATA_MAX_PAIRS, "propertyNames": {"maxLength": METADATA_MAX_KEY},
        "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE}})
    paths["/v1/batches"]["post"]["requestBody"] = _json_body(
        {"$ref": "#/components/schemas/CreateBatchBody"})
    paths["/admin/keys"]["post"]["requestBody"] = _json_body(
        {"$ref": "#/components/schemas/CreateKeyBody"})
    if "/admin/keys/{key_id}/budget" in paths:
        components["KeyBudgetBody"] = KeyBudgetBody.model_json_schema(
            ref_template="#/components/schemas/{model}")
        paths["/admin/keys/{key_id}/budget"]["post"]["requestBody"] = _json_body(
            {"$ref": "#/components/schemas/KeyBudgetBody"})
    paths["/v1/files"]["post"]["requestBody"] = {
        "required": True, "content": {"multipart/form-data": {"schema": UPLOAD_SCHEMA}}}


#: (method, path, query parameter) -> the values the route takes (it checks them itself).
QUERY_ENUMS: dict[tuple[str, str, str], list[str]] = {
    ("get", "/admin/costs", "group_by"): list(COST_GROUPS),
}


#: (method, path, query parameter) -> the pattern of the values documented (unix seconds;
#: the route also takes ISO 8601 dates).
QUERY_PATTERNS: dict[tuple[str, str, str], str] = {
    ("get", "/admin/costs", "since"): "^([0-9]{1,12})?$",
    ("get", "/admin/costs", "until"): "^([0-9]{1,12})?$",
}


def _string_schema(parameter: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = parameter["schema"]
    for option in schema.get("anyOf", ()):
        if option.get("type") == "string":
            return option
    return schema


def _add_enums(schema: dict[str, Any]) -> None:
    for (method, path, name), values in QUERY_ENUMS.items():
        operation = schema["paths"].get(path, {}).get(method, {})
        for parameter in operation.get("parameters", []):
            if parameter["name"] == name:
                _string_schema(parameter)["enum"] = values
    for (method, path, name), pattern in QUERY_PATTERNS.items():
        operation = schema["paths"].get(path, {}).get(method, {})
        for parameter in operation.get("parameters", []):
            if parameter["name"] == name:
                _string_schema(parameter)["pattern"] = pattern


def _fix_responses(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in OPEN_PATHS:
                if path == "/health/readiness":
                    responses["503"] = {"description": REASONS[503]}
                continue
            statuses = {400, 401, *EXTRA_ERRORS.get((method, path), ())}
            if path.startswith("/v1/schedules"):
                statuses |= {403, 404}
            for status in sorted(statuses):
                responses[str(status)] = {"description": REASONS[status], "content": {
                    "application/json": {"schema": ERROR_REF}}}
            operation["security"] = [{"bearer": []}, {"api-key": []}]


def build_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The ``app.openapi`` replacement: FastAPI's document, corrected once and cached."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "api-key": {"type": "apiKey", "in": "header", "name": "api-key"},
            }
            # FastAPI's own validation-error models describe the 422s removed below.
            for name in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(name, None)
            _add_bodies(schema)
            _add_enums(schema)
            _fix_responses(schema)
            forbid_nul(schema["components"]["schemas"])
            for operations in schema["paths"].values():
                for operation in operations.values():
                    forbid_nul(operation.get("parameters", []))
                    forbid_nul(operation.get("requestBody", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi

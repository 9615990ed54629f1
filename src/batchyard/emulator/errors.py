"""HTTP errors of the emulated providers and their envelopes.

OpenAI (and Azure's v1 surface) answer ``{"error": {"message", "type", "param", "code"}}``;
Azure's dated ("legacy") surface answers the Microsoft shape ``{"error": {"code", "message"}}``;
Anthropic answers ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from typing import Any, Literal

Surface = Literal["openai", "azure", "azure_v1", "anthropic"]

# Microsoft error codes of the authoring surface, by HTTP status.
_AZURE_CODES = {
    400: "invalidPayload",
    401: "401",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "429",
    500: "internalFailure",
    503: "serviceUnavailable",
}


# Anthropic error types, by HTTP status.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class EmulatorError(Exception):
    """An error answer; ``azure_code`` overrides the Microsoft code on the legacy surface."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        azure_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.azure_code = azure_code
        self.headers = headers or {}


def surface_of(path: str, flavor: str = "openai") -> Surface:
    """Which API surface a request path belongs to."""
    if flavor == "anthropic":
        return "anthropic"
    if path.startswith("/openai/v1/") or path == "/openai/v1":
        return "azure_v1"
    if path.startswith("/openai/"):
        return "azure"
    return "openai"


def error_body(exc: EmulatorError, surface: Surface) -> dict[str, Any]:
    """The JSON error body for ``surface``."""
    if surface == "anthropic":
        kind = ANTHROPIC_TYPES.get(exc.status, "api_error" if exc.status >= 500 else
                                   "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": exc.message}}
    if surface == "azure":
        azure = exc.azure_code or _AZURE_CODES.get(exc.status, str(exc.status))
        return {"error": {"code": azure, "message": exc.message}}
    code = exc.code
    if surface == "azure_v1" and exc.status in (401, 429):
        code = str(exc.status)  # Azure's gateway answers these with numeric codes
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": code}}


def not_found_file(file_id: str) -> EmulatorError:
    return EmulatorError(404, f"No such File object: {file_id}", param="id")


def not_found_batch(batch_id: str) -> EmulatorError:
    return EmulatorError(
        404, f"No batch found with id '{batch_id}'.", param="batch_id", code="batch_not_found"
    )


def bad_request(message: str, param: str | None = None) -> EmulatorError:
    return EmulatorError(400, message, param=param)

"""The one exception tree of batchyard.

Every class's docstring is its default message, so ``raise NotFoundError()`` still says
something useful. Boundaries translate: provider adapters turn HTTP failures into the
``Provider*`` classes, the API renders any ``BatchyardError`` as OpenAI's error envelope.
"""

from __future__ import annotations

from typing import Any


class BatchyardError(Exception):
    """Something went wrong in batchyard."""

    #: HTTP status the API answers with when this error reaches it.
    http_status: int = 500
    #: OpenAI-style error ``type`` for the API envelope.
    error_type: str = "server_error"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 param: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip()
        self.code = code
        self.param = param
        self.details = details
        super().__init__(self.message)


class ConfigError(BatchyardError):
    """The configuration is invalid."""


class InvalidInputError(BatchyardError):
    """The request is invalid."""

    http_status = 400
    error_type = "invalid_request_error"


class JsonlError(InvalidInputError):
    """A line of the JSONL input is invalid."""

    def __init__(self, message: str | None = None, *, line: int | None = None,
                 code: str | None = None, param: str | None = None) -> None:
        self.line = line
        text = message or (self.__doc__ or "").strip()
        if line is not None:
            text = f"line {line}: {text}"
        super().__init__(text, code=code, param=param)


class PayloadTooLargeError(InvalidInputError):
    """The upload is larger than allowed."""

    http_status = 413


class AuthenticationError(BatchyardError):
    """Missing or invalid API key."""

    http_status = 401
    error_type = "invalid_request_error"


class PermissionDeniedError(BatchyardError):
    """This key may not do that."""

    http_status = 403
    error_type = "invalid_request_error"


class NotFoundError(BatchyardError):
    """No such object."""

    http_status = 404
    error_type = "invalid_request_error"


class StateConflictError(BatchyardError):
    """The object is not in a state that allows this."""

    http_status = 400
    error_type = "invalid_request_error"


class IllegalTransitionError(BatchyardError):
    """A status write the lifecycle does not allow (a bug in the caller, not a race)."""


class LimitExceededError(BatchyardError):
    """A per-key limit would be exceeded."""

    http_status = 429
    error_type = "requests"


class StorageError(BatchyardError):
    """The file store failed."""


class ProviderError(BatchyardError):
    """The provider answered with an error."""

    http_status = 502
    error_type = "provider_error"

    def __init__(self, message: str | None = None, *, status: int | None = None,
                 code: str | None = None, param: str | None = None,
                 request_id: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code, param=param)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        bits = [self.message]
        if self.status is not None:
            bits.append(f"status={self.status}")
        if self.code:
            bits.append(f"code={self.code}")
        if self.request_id:
            bits.append(f"request_id={self.request_id}")
        return " ".join(bits)


class ProviderTransientError(ProviderError):
    """The provider failed in a way that may pass (timeout, 408/409/429/5xx, lost connection)."""


class ProviderRejectedError(ProviderError):
    """The provider rejected the request."""


class ProviderNotFoundError(ProviderRejectedError):
    """The provider does not know this object."""


class ProviderAuthError(ProviderError):
    """The provider refused our credentials."""

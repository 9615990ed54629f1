"""What a failed provider call means: which error it maps to, and when to try again.

Pure functions of a response (status, headers, body) plus :class:`RetryClock`, the retry
rules: 408/409/429/5xx and lost connections are retried with exponential
backoff and jitter; ``retry-after-ms`` / ``retry-after`` win over backoff; ``x-should-retry``
overrides the status; attempts and total time are bounded by :class:`HttpSettings`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from batchyard.config import HttpSettings
from batchyard.domain.backoff import parse_retry_after, retry_delay
from batchyard.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFoundError,
    ProviderRejectedError,
    ProviderTransientError,
)
from batchyard.providers.wire import error_fields

RETRYABLE_STATUSES = frozenset({408, 409, 429})
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-ms-request-id")


def request_id(response: httpx.Response) -> str | None:
    """The provider's request id (OpenAI ``x-request-id``, Anthropic ``request-id``, Azure
    ``apim-request-id``)."""
    for name in REQUEST_ID_HEADERS:
        if value := response.headers.get(name):
            return value
    return None


def retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms``, else ``retry-after``)."""
    return parse_retry_after(headers, time.time() if now is None else now)


def _should_retry_header(response: httpx.Response) -> bool | None:
    value = response.headers.get("x-should-retry", "").strip().lower()
    return {"true": True, "false": False}.get(value)


def status_error(response: httpx.Response) -> tuple[ProviderError, bool]:
    """Map an error response to our tree; also say whether it is worth retrying."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message, code, param = error_fields(body)
    if message is None:
        message = (response.text[:300].strip() if body is None else "") or response.reason_phrase
    status_code = response.status_code
    retryable = status_code in RETRYABLE_STATUSES or status_code >= 500
    forced = _should_retry_header(response)
    if forced is not None:
        retryable = forced
    kind = _error_class(status_code, retryable)
    error = kind(message, status=status_code, code=code, param=param,
                 request_id=request_id(response), retry_after=retry_after(response.headers))
    return error, retryable


def _error_class(status_code: int, retryable: bool) -> type[ProviderError]:
    if status_code in (401, 403):
        return ProviderAuthError
    if retryable or status_code in RETRYABLE_STATUSES or status_code >= 500:
        return ProviderTransientError
    if status_code == 404:
        return ProviderNotFoundError
    return ProviderRejectedError


def connection_error(exc: httpx.TransportError) -> ProviderTransientError:
    """A timeout or a lost connection: always transient."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    detail = str(exc) or type(exc).__name__
    return ProviderTransientError(f"provider request {kind}: {detail}")


class RetryClock:
    """Decides, attempt after attempt, whether to retry and how long to wait first.

    Exponential backoff with jitter, bounded by ``max_attempts`` and ``retry_total_seconds``;
    a provider's Retry-After wins over backoff, and one longer than ``max_retry_after`` means
    "do not retry now" (the caller gets the error with ``retry_after`` set and can schedule).
    """

    def __init__(self, settings: HttpSettings, *, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self._settings = settings
        self._clock = clock
        self._rand = rand
        self._started = clock()
        self.attempts = 0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based) without a Retry-After."""
        return retry_delay(attempt, initial=self._settings.backoff_initial,
                           cap=self._settings.backoff_max, jitter=0.25, rand=self._rand)

    def delay_after(self, error: ProviderError, retryable: bool) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up with ``error``."""
        self.attempts += 1
        if not retryable or self.attempts >= self._settings.max_attempts:
            return None
        hint = error.retry_after
        if hint is not None and hint > self._settings.max_retry_after:
            return None
        delay = hint if hint is not None and hint > 0 else self.backoff(self.attempts)
        if self._clock() - self._started + delay > self._settings.retry_total_seconds:
            return None
        return delay

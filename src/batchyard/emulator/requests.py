"""What happens to one batched request: success, an HTTP error, or a non-HTTP error.

Per-request faults are deterministic so pipeline tests can rely on them:

* a line whose ``body`` (or the line itself) carries ``"x_emulator": {"status": 500,
  "times": 1}`` fails with that status the first ``times`` times its custom_id is seen, then
  succeeds; without ``times`` it fails every time. ``{"error": "request_timeout"}`` instead
  of a status produces a non-HTTP error line (``response: null``); ``{"result": "expired"}``
  or ``{"result": "canceled"}`` makes the line come back as if the batch had expired or been
  cancelled before it ran.
* ``request_failure_rate`` fails that fraction of custom_ids (chosen by a hash of the id);
  transient statuses (408, 409, 429, 5xx) fail only the first time an id is seen.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

from batchyard.emulator import outputs

TRANSIENT = frozenset({408, 409, 429})


class Outcome(NamedTuple):
    """A request's fate: ``status`` + ``body`` for HTTP answers, or ``error`` (response null)."""

    status: int | None
    body: dict[str, Any] | None
    error: dict[str, str] | None = None
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def is_transient(status: int) -> bool:
    return status in TRANSIENT or status >= 500


def marker_of(line: dict[str, Any]) -> dict[str, Any] | None:
    """The ``x_emulator`` fault marker of a request line, if any."""
    body = line.get("body")
    marker = body.get("x_emulator") if isinstance(body, dict) else None
    marker = marker if marker is not None else line.get("x_emulator")
    return marker if isinstance(marker, dict) else None


def hashed_failure(custom_id: str, rate: float) -> bool:
    """Whether ``custom_id`` falls in the failing fraction (stable across runs)."""
    if rate <= 0:
        return False
    return zlib.crc32(custom_id.encode()) / 2**32 < rate


def marker_outcome(marker: dict[str, Any], attempt: int) -> Outcome | None:
    """The failure a marker asks for on this attempt (1 = first time seen), or None."""
    times = marker.get("times")
    if isinstance(times, int) and attempt > times:
        return None
    if marker.get("error") == "request_timeout":
        return Outcome(None, None, {"code": "request_timeout", "message": "The request timed out."})
    if marker.get("result") in ("expired", "canceled"):
        return Outcome(None, None, EXPIRED if marker["result"] == "expired" else CANCELLED)
    status = marker.get("status")
    return http_failure(int(status)) if isinstance(status, int) else None


def http_failure(status: int) -> Outcome:
    """An endpoint answering ``status`` with OpenAI's error body."""
    if status == 429:
        error = {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    elif status >= 500:
        error = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    else:
        error = {
            "message": f"The request was rejected with status {status}.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    return Outcome(status, {"error": error})


def bad_body(param: str, message: str) -> Outcome:
    """The endpoint's 400 for an invalid request body."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return Outcome(400, {"error": error})


def run_request(
    line: dict[str, Any], *, azure: bool, dims: int, injected: Outcome | None
) -> Outcome:
    """Execute one request line (``injected`` is a fault decided by the caller)."""
    if injected is not None:
        return injected
    body = line["body"]
    problem = outputs.body_problem(line["url"], body)
    if problem:
        return bad_body(*problem)
    result, tokens_in, tokens_out = outputs.success_body(line["url"], body, azure=azure, dims=dims)
    return Outcome(200, result, None, tokens_in, tokens_out)


CANCELLED = {"code": "batch_cancelled", "message": "This request was not executed because the "
             "batch was cancelled before it ran."}
EXPIRED = {"code": "batch_expired",
           "message": "This request could not be executed before the completion window expired."}

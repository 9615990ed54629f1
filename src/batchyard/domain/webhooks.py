"""Webhook events for finished batches: their shape, their signature, their retry delays.

Pure: the notifier service sends what this module builds. The signature follows the
widespread "timestamped HMAC" recipe: ``HMAC-SHA256(secret, "<timestamp>.<body>")`` in hex,
sent as ``batchyard-signature: t=<timestamp>,v1=<hex>``. Binding the timestamp into the MAC
lets a receiver reject replays of an old, validly signed event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "batchyard-signature"
EVENT_ID_HEADER = "batchyard-event-id"

#: Terminal batch status -> event type.
EVENT_TYPES: dict[str, str] = {
    "completed": "batch.completed",
    "failed": "batch.failed",
    "cancelled": "batch.cancelled",
    "expired": "batch.expired",
}


def event_type_for(status: str) -> str | None:
    """The event type announced for a batch ending in ``status`` (None: not terminal)."""
    return EVENT_TYPES.get(status)


def event_id_for(batch_id: str, status: str) -> str:
    """A stable id per (batch, terminal status), so announcing twice is one event."""
    digest = hashlib.sha256(f"{batch_id}:{status}".encode()).hexdigest()
    return f"evt_{digest[:24]}"


def build_event(*, batch_id: str, status: str, request_counts: Mapping[str, int],
                usage: Mapping[str, Any] | None, created_at: int) -> dict[str, Any]:
    """The JSON event posted when a batch ends."""
    event_type = event_type_for(status)
    if event_type is None:
        raise ValueError(f"status {status!r} is not terminal")
    return {
        "id": event_id_for(batch_id, status),
        "object": "event",
        "type": event_type,
        "created_at": created_at,
        "data": {
            "id": batch_id,
            "object": "batch",
            "status": status,
            "request_counts": dict(request_counts),
            "usage": dict(usage) if usage is not None else None,
        },
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and posted."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``batchyard-signature`` header value: ``t=<timestamp>,v1=<hex>``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures in a header (ValueError when malformed)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, _, val = item.strip().partition("=")
        if key == "t":
            timestamp = int(val)
        elif key == "v1":
            signatures.append(val)
    if timestamp is None or not signatures:
        raise ValueError("signature header needs t= and v1=")
    return timestamp, signatures


def verify_signature(secret: str, header: str, body: bytes, *, now: float,
                     tolerance_seconds: float = 300.0) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is recent enough."""
    try:
        timestamp, signatures = parse_signature_header(header)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def retry_delay(attempt: int, *, initial: float, maximum: float, factor: float = 2.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped."""
    return float(min(maximum, initial * factor ** max(0, attempt - 1)))

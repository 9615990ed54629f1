"""Webhook events for finished batches: their shape and their signature.

Pure: the notifier service sends what this module builds (and retries with
:func:`batchyard.domain.backoff.retry_delay`). The signature follows the
widespread "timestamped HMAC" recipe: ``HMAC-SHA256(secret, "<timestamp>.<body>")`` in hex,
sent as ``batchyard-signature: t=<timestamp>,v1=<hex>``. Binding the timestamp into the MAC
lets a receiver reject replays of an old, validly signed event.

Where a webhook may go is decided here too: never to this host's or its network's internal
addresses (loopback, private ranges, link-local cloud metadata ...) unless an operator allowed
them; the notifier checks when a URL is given and again, on the resolved addresses, when it
connects.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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



# -- where a webhook may be sent ---------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WebhookAllowList:
    """Hosts and networks an operator lets webhooks reach although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> WebhookAllowList:
        """Entries are host names (``hooks.internal``), addresses or CIDR networks."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().lower().strip("[]")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.add(text.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Whether the host name itself was allowed (whatever it resolves to)."""
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """Whether the address lies in an allowed network."""
        return any(address in network for network in self.networks
                   if network.version == address.version)


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                return embedded
        if address.teredo is not None:
            return address.teredo[1]
    return address


def is_internal_address(address: IPAddress) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified.

    IPv4 addresses carried inside IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo) are judged as the
    IPv4 address they carry.
    """
    inner = _unmapped(address)
    return (not inner.is_global or inner.is_loopback or inner.is_private or inner.is_link_local
            or inner.is_multicast or inner.is_reserved or inner.is_unspecified)


def webhook_host(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) webhook URL; ValueError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook URLs must be absolute http(s) URLs")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook URLs must not carry credentials")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


def refused_addresses(host: str, addresses: Iterable[IPAddress],
                      allow: WebhookAllowList) -> list[IPAddress]:
    """The addresses a webhook to ``host`` must not reach (empty: it may be sent)."""
    if allow.allows_host(host):
        return []
    return [a for a in addresses if is_internal_address(a) and not allow.allows_address(a)]


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

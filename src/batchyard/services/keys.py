"""API keys: the master key from Settings and virtual keys stored hashed in SQL.

A virtual key is shown in plain text once, at creation (prefix ``sk-by-``); only its sha256
is stored. Each virtual key owns the files and batches created with it and carries optional
limits (largest upload, batches in flight). The master key owns nothing and sees everything
(``owner=None`` throughout the service layer).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from batchyard.config import Settings
from batchyard.db import batches
from batchyard.db import keys as repo
from batchyard.db.models import ApiKeyRow
from batchyard.domain.lifecycle import OPEN_BATCH_STATUSES
from batchyard.errors import (
    AuthenticationError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "sk-by-"
#: Public statuses that still hold a slot of a key's "batches in flight" limit.
IN_FLIGHT_STATUSES = OPEN_BATCH_STATUSES


class KeyServices(Protocol):
    """What this module needs from ``Services`` (any object with these attributes)."""

    settings: Settings
    sessions: sessionmaker[Session]


@dataclass(frozen=True)
class ApiKey:
    """A virtual key as the admin sees it (never the plain text or the hash)."""

    id: str
    name: str
    key_prefix: str
    created_at: int
    revoked_at: int | None
    max_file_bytes: int | None
    max_batches_in_flight: int | None
    can_schedule: bool

    def to_dict(self) -> dict[str, Any]:
        """The admin API / CLI shape."""
        return {"id": self.id, "object": "api_key", "name": self.name,
                "key_prefix": self.key_prefix, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "max_file_bytes": self.max_file_bytes,
                "max_batches_in_flight": self.max_batches_in_flight,
                "can_schedule": self.can_schedule}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the master (``owner`` None) or one virtual key."""

    owner: str | None
    key: ApiKey | None = None

    @property
    def is_master(self) -> bool:
        """Whether this caller holds master rights (admin routes, sees everything)."""
        return self.key is None


MASTER = Principal(owner=None)


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(id=row.id, name=row.name, key_prefix=row.key_prefix, created_at=row.created_at,
                  revoked_at=row.revoked_at, max_file_bytes=row.max_file_bytes,
                  max_batches_in_flight=row.max_batches_in_flight,
                  can_schedule=bool(row.can_schedule))


def _positive_or_none(value: int | None, name: str) -> int | None:
    if value is not None and value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer", param=name)
    return value


def create_key(svc: KeyServices, *, name: str, max_file_bytes: int | None = None,
               max_batches_in_flight: int | None = None,
               can_schedule: bool = False) -> tuple[ApiKey, str]:
    """Create a virtual key; returns its record and the plain text (shown once, never stored)."""
    if not name.strip():
        raise InvalidInputError("name must not be empty", param="name")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id="key_" + secrets.token_hex(12), name=name.strip()[:200], key_hash=_hash(plaintext),
        key_prefix=plaintext[:12], created_at=int(time.time()), revoked_at=None,
        max_file_bytes=_positive_or_none(max_file_bytes, "max_file_bytes"),
        max_batches_in_flight=_positive_or_none(max_batches_in_flight, "max_batches_in_flight"),
        can_schedule=can_schedule,
    )
    with svc.sessions.begin() as session:
        repo.add_key(session, row)
    logger.info("keys.created", extra={"key_id": row.id})
    return _record(row), plaintext


def list_keys(svc: KeyServices, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every virtual key, oldest first."""
    with svc.sessions() as session:
        return [_record(row) for row in repo.all_keys(session, include_revoked=include_revoked)]


def revoke_key(svc: KeyServices, key_id: str) -> ApiKey:
    """Revoke a virtual key at once (its objects stay; only the master can still see them)."""
    with svc.sessions.begin() as session:
        row = repo.get_key(session, key_id)
        if row is None:
            raise NotFoundError(f"No such API key: {key_id}", param="key_id")
        if row.revoked_at is None:
            row.revoked_at = int(time.time())
        record = _record(row)
    logger.info("keys.revoked", extra={"key_id": key_id})
    return record


def _mask(token: str) -> str:
    # Like OpenAI's message, but without echoing more than the public prefix and 4 chars.
    tail = token[-4:] if len(token) > 12 else ""
    head = KEY_PREFIX if token.startswith(KEY_PREFIX) else token[:3]
    return f"{head}****{tail}"


def authenticate(svc: KeyServices, token: str | None, *, local_client: bool) -> Principal:
    """Resolve the presented key to a Principal, or raise AuthenticationError (401).

    With a master key configured every call needs a key. Without one (the embedded default),
    the API is open to loopback clients only, as the master; virtual keys still scope callers.
    """
    master = svc.settings.master_key
    if token and master is not None and hmac.compare_digest(
            token.encode(), master.get_secret_value().encode()):
        return MASTER
    if token and token.startswith(KEY_PREFIX):
        return _virtual_principal(svc, token)
    if master is None and local_client:
        return MASTER
    if not token:
        raise AuthenticationError(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    raise AuthenticationError(f"Incorrect API key provided: {_mask(token)}.",
                              code="invalid_api_key")


def _virtual_principal(svc: KeyServices, token: str) -> Principal:
    with svc.sessions() as session:
        row = repo.key_by_hash(session, _hash(token))
        record = _record(row) if row is not None else None
    if record is None or record.revoked_at is not None:
        raise AuthenticationError(f"Incorrect API key provided: {_mask(token)}.",
                                  code="invalid_api_key")
    return Principal(owner=record.id, key=record)


def require_master(principal: Principal) -> None:
    """Admin operations are for the master key only (403 otherwise)."""
    if not principal.is_master:
        raise PermissionDeniedError("This operation needs the master key.",
                                    code="insufficient_permissions")


def upload_limit(svc: KeyServices, principal: Principal) -> int:
    """Largest upload this caller may make, in bytes (global limit and the key's own)."""
    limit = svc.settings.api.max_upload_bytes
    if principal.key is not None and principal.key.max_file_bytes is not None:
        limit = min(limit, principal.key.max_file_bytes)
    return limit


def ensure_batch_capacity(svc: KeyServices, principal: Principal) -> None:
    """Raise LimitExceededError (429) if the key already has its maximum of batches in flight."""
    key = principal.key
    if key is None or key.max_batches_in_flight is None:
        return
    with svc.sessions() as session:
        in_flight = batches.count_batches(session, owner=key.id, statuses=IN_FLIGHT_STATUSES)
    if in_flight >= key.max_batches_in_flight:
        raise LimitExceededError(
            f"This key already has {in_flight} batches in flight (limit "
            f"{key.max_batches_in_flight}); wait for one to finish.",
            code="batch_limit_exceeded")

"""Defensive parsing of provider wire JSON into the snapshot records.

OpenAI follows its spec closely; Azure's authoring surface and its documentation examples do
not always (ISO-8601 timestamps, ``"Validating"``, ``""`` for a missing file id, a string
``line``, ``request_counts`` members ``null``, no ``has_more``). One tolerant parser serves
both, so a quirk seen on either provider can never crash the other's adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from batchyard.providers.base import (
    ProviderBatch,
    ProviderBatchError,
    ProviderFile,
    ProviderPage,
    ProviderRequestCounts,
)

T = TypeVar("T")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_BATCH_TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at",
                     "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")


def timestamp(value: Any) -> int | None:
    """Unix seconds from an int, a float, a numeric string or an ISO-8601 string."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:  # providers mean UTC when they forget the offset
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    return None


def status(value: Any) -> str:
    """Lowercase snake_case status: ``"Validating"`` and ``"InProgress"`` become OpenAI's."""
    text = str(value or "").strip()
    return _CAMEL_BOUNDARY.sub("_", text).replace("-", "_").replace(" ", "_").lower()


def optional_str(value: Any) -> str | None:
    """``None`` for null and ``""`` (Azure sends ``""`` where it means no file)."""
    if value is None or value == "":
        return None
    return str(value)


def integer(value: Any, default: int | None = None) -> int | None:
    """An int from an int or a numeric string; ``default`` for anything else."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def parse_file(body: Mapping[str, Any]) -> ProviderFile:
    """A file object (OpenAI or Azure) as a :class:`ProviderFile`."""
    return ProviderFile(
        id=str(body["id"]),
        filename=str(body.get("filename") or ""),
        purpose=str(body.get("purpose") or ""),
        bytes=integer(body.get("bytes"), 0) or 0,
        created_at=timestamp(body.get("created_at")),
        expires_at=timestamp(body.get("expires_at")),
        status=status(body["status"]) if body.get("status") else None,
        status_details=optional_str(body.get("status_details")),
    )


def parse_batch(body: Mapping[str, Any]) -> ProviderBatch:
    """A batch object (OpenAI or Azure) as a :class:`ProviderBatch`."""
    stamps: dict[str, Any] = {name: timestamp(body.get(name)) for name in _BATCH_TIMESTAMPS}
    return ProviderBatch(
        id=str(body["id"]),
        status=status(body.get("status")),
        endpoint=optional_str(body.get("endpoint")),
        input_file_id=optional_str(body.get("input_file_id")),
        completion_window=optional_str(body.get("completion_window")),
        output_file_id=optional_str(body.get("output_file_id")),
        error_file_id=optional_str(body.get("error_file_id")),
        model=optional_str(body.get("model")),
        request_counts=parse_request_counts(body.get("request_counts")),
        errors=parse_batch_errors(body.get("errors")),
        metadata=_string_map(body.get("metadata")),
        usage=dict(body["usage"]) if isinstance(body.get("usage"), Mapping) else None,
        **stamps,
    )


def parse_request_counts(value: Any) -> ProviderRequestCounts:
    """``request_counts``; absent or ``null`` members count as 0."""
    if not isinstance(value, Mapping):
        return ProviderRequestCounts()
    return ProviderRequestCounts(
        total=integer(value.get("total"), 0) or 0,
        completed=integer(value.get("completed"), 0) or 0,
        failed=integer(value.get("failed"), 0) or 0,
    )


def parse_batch_errors(value: Any) -> tuple[ProviderBatchError, ...]:
    """``errors``: the list envelope, a bare list, or Azure's single-object ``data``."""
    if isinstance(value, Mapping):
        value = value.get("data", value if "code" in value else None)
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(_batch_error(item) for item in value if isinstance(item, Mapping))


def _batch_error(item: Mapping[str, Any]) -> ProviderBatchError:
    return ProviderBatchError(
        code=optional_str(item.get("code")),
        message=optional_str(item.get("message")),
        param=optional_str(item.get("param")),
        line=integer(item.get("line")),
    )


def _string_map(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(key): "" if item is None else str(item) for key, item in value.items()}


def parse_page(body: Any, item: Callable[[Mapping[str, Any]], T]) -> ProviderPage[T]:
    """A list envelope; a missing ``has_more`` (Azure 2024-10-21 files) means no more pages."""
    if isinstance(body, list):
        body = {"data": body}
    if not isinstance(body, Mapping):
        raise ValueError("list response is not an object")
    rows = body.get("data") or []
    data = tuple(item(row) for row in rows if isinstance(row, Mapping))
    return ProviderPage(
        data=data,
        has_more=body.get("has_more") is True,
        first_id=optional_str(body.get("first_id")) or (_id_of(data[0]) if data else None),
        last_id=optional_str(body.get("last_id")) or (_id_of(data[-1]) if data else None),
    )


def _id_of(record: Any) -> str | None:
    return getattr(record, "id", None)


def parse_deleted(body: Mapping[str, Any]) -> bool:
    """The ``deleted`` flag of a delete response."""
    return body.get("deleted") is True


def next_cursor(page: ProviderPage[Any], previous: str | None) -> str | None:
    """The ``after`` for the next page, or ``None`` when paging is over.

    Like openai-python, the cursor is the id of the last item, not ``last_id``. A page that
    does not move the cursor ends paging too, so a provider bug cannot loop us forever.
    """
    if not page.has_more or not page.data:
        return None
    cursor = _id_of(page.data[-1])
    return cursor if cursor and cursor != previous else None


def error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from an OpenAI, Microsoft or Anthropic error envelope.

    Anthropic's ``{"type": "error", "error": {"type", "message"}}`` has no code: its error
    type (``overloaded_error``, ``invalid_request_error`` ...) is the code.
    """
    if not isinstance(body, Mapping):
        return None, None, None
    inner = body.get("error", body)
    if isinstance(inner, str):  # some gateways send {"error": "text"}
        return inner, None, None
    if not isinstance(inner, Mapping):
        return None, None, None
    code = optional_str(inner.get("code"))
    if code is None and body.get("type") == "error":
        code = optional_str(inner.get("type"))
    nested = inner.get("innererror") or inner.get("inner_error")
    if code is None and isinstance(nested, Mapping):
        code = optional_str(nested.get("code"))
    param = optional_str(inner.get("param")) or optional_str(inner.get("target"))
    return optional_str(inner.get("message")), code, param

"""Wire shapes of files, batches and list pages for each surface."""

from __future__ import annotations

from typing import Any

from batchyard.emulator.errors import Surface
from batchyard.emulator.store import BatchEntry, FileEntry

_TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
               "cancelling_at", "cancelled_at")


def file_object(entry: FileEntry) -> dict[str, Any]:
    """The File object (same shape on every surface)."""
    return {
        "id": entry.id,
        "object": "file",
        "bytes": entry.bytes,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "filename": entry.filename,
        "purpose": entry.purpose,
        "status": "processed",
        "status_details": None,
    }


def deleted_file(entry: FileEntry) -> dict[str, Any]:
    return {"id": entry.id, "object": "file", "deleted": True}


def batch_object(batch: BatchEntry, surface: Surface) -> dict[str, Any]:
    """The Batch object; Azure's dated surface has no ``model`` / ``usage``."""
    data: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": list(batch.errors)} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": batch.created_at,
        "expires_at": batch.expires_at,
    }
    for name in _TIMESTAMPS:
        data[name] = batch.timestamps.get(name)
    data["request_counts"] = {
        "total": batch.total, "completed": batch.completed, "failed": batch.failed,
    }
    data["metadata"] = batch.metadata
    if surface != "azure":
        data["model"] = batch.model
        data["usage"] = _usage(batch) if "total_tokens" in batch.usage else None
    return data


def _usage(batch: BatchEntry) -> dict[str, Any]:
    return {
        "input_tokens": batch.usage.get("input_tokens", 0),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": batch.usage.get("output_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": batch.usage.get("total_tokens", 0),
    }


def list_page(data: list[dict[str, Any]], has_more: bool, *, cursors: bool = True) -> dict[
    str, Any
]:
    """A cursor page (``cursors=False``: Azure 2024-10-21 file lists, just object + data)."""
    page: dict[str, Any] = {"object": "list", "data": data}
    if cursors:
        page["first_id"] = data[0]["id"] if data else None
        page["last_id"] = data[-1]["id"] if data else None
        page["has_more"] = has_more
    return page

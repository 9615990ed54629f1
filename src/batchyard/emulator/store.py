"""In-memory records of files and batches, guarded by one lock.

File bytes live on disk (see :mod:`batchyard.emulator.uploads`); this module only keeps
their metadata. The ``uploads`` and ``created`` ledgers are append-only and survive deletes
and resets of the live state, so tests can count what a client ever created.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})


@dataclass
class FileEntry:
    """One stored file (an upload or a batch output/error file)."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    path: Path
    expires_at: int | None = None
    deleted: bool = False
    #: ``time.monotonic()`` from which list answers show it (the lagging-list fault).
    listed_from: float = 0.0


@dataclass
class BatchEntry:
    """One batch and everything its runner updates as it progresses."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None
    output_expires_after: int | None = None
    status: str = "validating"
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    timestamps: dict[str, int | None] = field(default_factory=dict)
    enqueued_tokens: int = 0
    not_found_left: int = 0
    listed_from: float = 0.0
    #: GET /batches/{id} calls that reached the batch (faulted calls never do).
    retrieves: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class Store:
    """All live files and batches plus the ledgers of what was ever created."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileEntry] = {}
        self.batches: dict[str, BatchEntry] = {}
        self.uploads: list[FileEntry] = []
        self.created: list[BatchEntry] = []
        # Anthropic Message Batches (entries of batchyard.emulator.message_batches).
        self.message_batches: dict[str, Any] = {}
        self.message_created: list[Any] = []

    def add_upload(self, entry: FileEntry) -> None:
        with self.lock:
            self.files[entry.id] = entry
            self.uploads.append(entry)

    def add_output(self, entry: FileEntry) -> None:
        with self.lock:
            self.files[entry.id] = entry

    def add_batch(self, entry: BatchEntry) -> None:
        with self.lock:
            self.batches[entry.id] = entry
            self.created.append(entry)

    def live_file(self, file_id: str) -> FileEntry | None:
        with self.lock:
            entry = self.files.get(file_id)
            return None if entry is None or entry.deleted else entry

    def list_files(self, purpose: str | None, order: str) -> list[FileEntry]:
        """Live files, newest first unless ``order == "asc"`` (creation order breaks ties)."""
        now = time.monotonic()
        with self.lock:
            items = [f for f in self.files.values() if not f.deleted and f.listed_from <= now]
        if purpose:
            items = [f for f in items if f.purpose == purpose]
        return items if order == "asc" else items[::-1]

    def list_batches(self) -> list[BatchEntry]:
        """Batches newest first (those still hidden by the lagging-list fault left out)."""
        now = time.monotonic()
        with self.lock:
            return [b for b in self.batches.values() if b.listed_from <= now][::-1]

    def enqueued_tokens(self, model: str, exclude: str | None = None) -> int:
        """Tokens held by active batches of ``model`` (the enqueued-token quota usage)."""
        with self.lock:
            return sum(
                b.enqueued_tokens
                for b in self.batches.values()
                if b.active and b.model == model and b.id != exclude
            )

    def stats(self) -> dict[str, Any]:
        """Counts and details of every upload and batch ever created."""
        with self.lock:
            files = [
                {"id": f.id, "filename": f.filename, "purpose": f.purpose, "bytes": f.bytes}
                for f in self.uploads
            ]
            batches = [
                {
                    "id": b.id,
                    "status": b.status,
                    "input_file_id": b.input_file_id,
                    "metadata": dict(b.metadata) if b.metadata is not None else None,
                    "model": b.model,
                    "retrieves": b.retrieves,
                }
                for b in self.created
            ]
            batches += [
                {
                    "id": b.id,
                    "status": b.status,
                    "input_file_id": None,
                    "metadata": None,
                    "model": b.model,
                    "request_count": b.total,
                    "first_custom_id": b.first_custom_id,
                }
                for b in self.message_created
            ]
        return {
            "files_uploaded": len(files),
            "batches_created": len(batches),
            "files": files,
            "batches": batches,
        }


def page(items: list[Any], after: str | None, limit: int) -> tuple[list[Any], bool]:
    """Cursor paging: the items strictly after the one with id ``after``."""
    start = 0
    if after:
        ids = [item.id for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = items[start : start + limit]
    return chunk, start + limit < len(items)

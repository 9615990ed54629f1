"""Typed results of the SDK, with OpenAI's field names (``openai.types`` users feel at home).

They are pydantic models, so ``model_dump()`` / ``model_dump_json()`` work, and they are
built from the adapters' snapshot records at this edge only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from batchyard.providers.base import ProviderBatch, ProviderFile, ProviderPage


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class FileObject(_Model):
    """A file at the provider (OpenAI ``FileObject``)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int | None = None
    filename: str
    purpose: str
    status: str | None = None
    status_details: str | None = None
    expires_at: int | None = None


class FileDeleted(_Model):
    """The answer to a delete (OpenAI ``FileDeleted``)."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool


class FileList(_Model):
    """A page of files."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchRequestCounts(_Model):
    """How many requests a batch has, and how many completed or failed."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_Model):
    """A validation error of a batch (``line`` is 1-based)."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Model):
    """The ``errors`` list envelope of a failed batch."""

    object: Literal["list"] = "list"
    data: list[BatchError]


class Batch(_Model):
    """A provider batch (OpenAI ``Batch``)."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str | None = None
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str | None = None
    completion_window: str | None = None
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class BatchList(_Model):
    """A page of batches."""

    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileContent(_Model):
    """A file's bytes: ``.content``, ``.text``, iteration over lines, ``write_to_file``."""

    file_id: str
    content: bytes

    @property
    def text(self) -> str:
        """The content decoded as UTF-8."""
        return self.content.decode("utf-8")

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        """The content line by line (with line endings), like a binary file."""
        return iter(self.content.splitlines(keepends=True))

    def iter_lines(self) -> Iterator[str]:
        """Decoded lines without line endings, skipping blank ones."""
        return (line for line in self.text.splitlines() if line.strip())

    def json_lines(self) -> list[Any]:
        """Each non-blank line parsed as JSON (output and error files are JSONL)."""
        return [json.loads(line) for line in self.iter_lines()]

    def write_to_file(self, path: str | Path) -> int:
        """Write the bytes to ``path``; returns the number written."""
        return Path(path).write_bytes(self.content)


def file_object(record: ProviderFile) -> FileObject:
    """SDK model of an adapter file record."""
    return FileObject.model_validate(dataclasses.asdict(record))


def batch_object(record: ProviderBatch) -> Batch:
    """SDK model of an adapter batch record."""
    fields = dataclasses.asdict(record)
    errors = fields.pop("errors")
    fields["errors"] = {"object": "list", "data": errors} if errors else None
    return Batch.model_validate(fields)


def file_page(page: ProviderPage[ProviderFile]) -> FileList:
    """SDK page of files."""
    return FileList(data=[file_object(item) for item in page.data], first_id=page.first_id,
                    last_id=page.last_id, has_more=page.has_more)


def batch_page(page: ProviderPage[ProviderBatch]) -> BatchList:
    """SDK page of batches."""
    return BatchList(data=[batch_object(item) for item in page.data], first_id=page.first_id,
                     last_id=page.last_id, has_more=page.has_more)

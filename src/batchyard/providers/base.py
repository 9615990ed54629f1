"""What every provider adapter offers, and the snapshot records it returns.

The records are small, frozen and already normalised (lowercase statuses, ints or ``None``
for timestamps, ``None`` where a provider sends ``""``), so nothing above the adapter ever
sees a provider's wire JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, Literal, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

T = TypeVar("T")

#: What ``upload_file`` accepts: a path (opened per attempt) or an open binary file.
UploadSource = str | Path | BinaryIO


class ProviderConfig(BaseModel):
    """Where and how to reach one provider account or Azure resource.

    For Azure, ``api_version`` picks the surface: ``None``, ``"v1"`` or ``"preview"`` use
    ``/openai/v1/...``; a dated version (``"2024-10-21"``) uses the legacy
    ``/openai/...?api-version=`` routes. For Anthropic, ``api_version`` is the
    ``anthropic-version`` header (default ``2023-06-01``). ``azure_ad_token`` (a Microsoft
    Entra token) is sent as a bearer token instead of the ``api-key`` header.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["openai", "azure", "anthropic"]
    api_key: SecretStr | None = None
    api_base: str | None = None
    api_version: str | None = None
    azure_ad_token: SecretStr | None = None


@dataclass(frozen=True, slots=True)
class ProviderFile:
    """A provider's file object."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int | None = None
    expires_at: int | None = None
    status: str | None = None
    status_details: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderBatchError:
    """One entry of a batch's ``errors.data`` (validation failures)."""

    code: str | None
    message: str | None
    param: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderRequestCounts:
    """How many of a batch's requests are done, and how many of those failed."""

    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ProviderBatch:
    """A provider's batch object, normalised."""

    id: str
    status: str
    endpoint: str | None = None
    input_file_id: str | None = None
    completion_window: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    created_at: int | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: ProviderRequestCounts = field(default_factory=ProviderRequestCounts)
    errors: tuple[ProviderBatchError, ...] = ()
    metadata: dict[str, str] | None = None
    usage: dict[str, Any] | None = None
    #: Anthropic: where the results JSONL is, once the batch has ended.
    results_url: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderPage(Generic[T]):
    """One page of a provider list call."""

    data: tuple[T, ...]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class BatchClient(Protocol):
    """What every adapter (Files+Batches or Message Batches) offers on existing batches."""

    def retrieve_batch(self, batch_id: str) -> ProviderBatch: ...
    def cancel_batch(self, batch_id: str) -> ProviderBatch: ...
    def list_batches(self, *, page_size: int = 100) -> Iterator[ProviderBatch]: ...


class Provider(Protocol):
    """A synchronous provider adapter (also a context manager that closes its client)."""

    def upload_file(self, source: UploadSource, *, filename: str | None = None,
                    purpose: str = "batch") -> ProviderFile: ...
    def retrieve_file(self, file_id: str) -> ProviderFile: ...
    def list_files(self, *, purpose: str | None = None) -> Iterator[ProviderFile]: ...
    def list_files_page(self, *, purpose: str | None = None, limit: int | None = None,
                        after: str | None = None) -> ProviderPage[ProviderFile]: ...
    def delete_file(self, file_id: str) -> bool: ...
    def download_file(self, file_id: str, dest: BinaryIO) -> int: ...
    def create_batch(self, *, input_file_id: str, endpoint: str,
                     completion_window: str = "24h",
                     metadata: dict[str, str] | None = None) -> ProviderBatch: ...
    def retrieve_batch(self, batch_id: str) -> ProviderBatch: ...
    def list_batches(self, *, page_size: int = 100) -> Iterator[ProviderBatch]: ...
    def list_batches_page(self, *, limit: int | None = None,
                          after: str | None = None) -> ProviderPage[ProviderBatch]: ...
    def cancel_batch(self, batch_id: str) -> ProviderBatch: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class AsyncProvider(Protocol):
    """The asynchronous twin of :class:`Provider` (list_* are async iterators)."""

    async def upload_file(self, source: UploadSource, *, filename: str | None = None,
                          purpose: str = "batch") -> ProviderFile: ...
    async def retrieve_file(self, file_id: str) -> ProviderFile: ...
    def list_files(self, *, purpose: str | None = None) -> AsyncIterator[ProviderFile]: ...
    async def list_files_page(self, *, purpose: str | None = None, limit: int | None = None,
                              after: str | None = None) -> ProviderPage[ProviderFile]: ...
    async def delete_file(self, file_id: str) -> bool: ...
    async def download_file(self, file_id: str, dest: BinaryIO) -> int: ...
    async def create_batch(self, *, input_file_id: str, endpoint: str,
                           completion_window: str = "24h",
                           metadata: dict[str, str] | None = None) -> ProviderBatch: ...
    async def retrieve_batch(self, batch_id: str) -> ProviderBatch: ...
    def list_batches(self, *, page_size: int = 100) -> AsyncIterator[ProviderBatch]: ...
    async def list_batches_page(self, *, limit: int | None = None,
                                after: str | None = None) -> ProviderPage[ProviderBatch]: ...
    async def cancel_batch(self, batch_id: str) -> ProviderBatch: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

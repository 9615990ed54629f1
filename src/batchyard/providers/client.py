"""The sync and async provider clients: thin senders of the operations an adapter builds.

Each method is one line that hands an :class:`~batchyard.providers.http.Op` from the
provider's operations object to an executor, so the request building, parsing and retry
rules exist once for both flavours of I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, BinaryIO

from batchyard.providers.base import (
    AsyncProvider,
    Provider,
    ProviderBatch,
    ProviderFile,
    ProviderPage,
    UploadSource,
)
from batchyard.providers.http import AsyncClosingClient, AsyncExecutor, ClosingClient, SyncExecutor
from batchyard.providers.openai import OpenAIOperations
from batchyard.providers.wire import next_cursor


class SyncProviderClient(ClosingClient):
    """A synchronous :class:`~batchyard.providers.base.Provider` over ``httpx.Client``."""

    def __init__(self, ops: OpenAIOperations, executor: SyncExecutor) -> None:
        self._ops = ops
        self._run = executor.run
        self._executor = executor

    def upload_file(self, source: UploadSource, *, filename: str | None = None,
                    purpose: str = "batch") -> ProviderFile:
        """Upload a file (streamed from disk or from the open file)."""
        return self._run(self._ops.upload_file(source, filename=filename, purpose=purpose))

    def retrieve_file(self, file_id: str) -> ProviderFile:
        """Fetch one file object."""
        return self._run(self._ops.retrieve_file(file_id))

    def list_files_page(self, *, purpose: str | None = None, limit: int | None = None,
                        after: str | None = None) -> ProviderPage[ProviderFile]:
        """One page of files."""
        return self._run(self._ops.list_files_page(purpose, limit, after))

    def list_files(self, *, purpose: str | None = None) -> Iterator[ProviderFile]:
        """Every file, page after page."""
        after: str | None = None
        while True:
            page = self.list_files_page(purpose=purpose, limit=self._ops.files_page_size,
                                        after=after)
            yield from page.data
            if (after := next_cursor(page, after)) is None:
                return

    def delete_file(self, file_id: str) -> bool:
        """Delete a file; True when the provider says it is gone."""
        return self._run(self._ops.delete_file(file_id))

    def download_file(self, file_id: str, dest: BinaryIO) -> int:
        """Stream a file's content into ``dest``; returns the bytes written."""
        return self._executor.download(self._ops.file_content(file_id), dest)

    def create_batch(self, *, input_file_id: str, endpoint: str, completion_window: str = "24h",
                     metadata: dict[str, str] | None = None) -> ProviderBatch:
        """Create a provider batch."""
        return self._run(self._ops.create_batch(
            input_file_id=input_file_id, endpoint=endpoint,
            completion_window=completion_window, metadata=metadata))

    def retrieve_batch(self, batch_id: str) -> ProviderBatch:
        """Fetch one batch."""
        return self._run(self._ops.retrieve_batch(batch_id))

    def list_batches_page(self, *, limit: int | None = None,
                          after: str | None = None) -> ProviderPage[ProviderBatch]:
        """One page of batches."""
        return self._run(self._ops.list_batches_page(limit, after))

    def list_batches(self, *, page_size: int = 100) -> Iterator[ProviderBatch]:
        """Every batch, page after page via ``after``."""
        after: str | None = None
        while True:
            page = self.list_batches_page(limit=page_size, after=after)
            yield from page.data
            if (after := next_cursor(page, after)) is None:
                return

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        """Ask the provider to cancel a batch."""
        return self._run(self._ops.cancel_batch(batch_id))


class AsyncProviderClient(AsyncClosingClient):
    """An asynchronous :class:`~batchyard.providers.base.AsyncProvider` over ``AsyncClient``."""

    def __init__(self, ops: OpenAIOperations, executor: AsyncExecutor) -> None:
        self._ops = ops
        self._run = executor.run
        self._executor = executor

    async def upload_file(self, source: UploadSource, *, filename: str | None = None,
                          purpose: str = "batch") -> ProviderFile:
        """Upload a file (streamed from disk or from the open file)."""
        return await self._run(self._ops.upload_file(source, filename=filename, purpose=purpose))

    async def retrieve_file(self, file_id: str) -> ProviderFile:
        """Fetch one file object."""
        return await self._run(self._ops.retrieve_file(file_id))

    async def list_files_page(self, *, purpose: str | None = None, limit: int | None = None,
                              after: str | None = None) -> ProviderPage[ProviderFile]:
        """One page of files."""
        return await self._run(self._ops.list_files_page(purpose, limit, after))

    async def list_files(self, *, purpose: str | None = None) -> AsyncIterator[ProviderFile]:
        """Every file, page after page."""
        after: str | None = None
        while True:
            page = await self.list_files_page(purpose=purpose, limit=self._ops.files_page_size,
                                              after=after)
            for item in page.data:
                yield item
            if (after := next_cursor(page, after)) is None:
                return

    async def delete_file(self, file_id: str) -> bool:
        """Delete a file; True when the provider says it is gone."""
        return await self._run(self._ops.delete_file(file_id))

    async def download_file(self, file_id: str, dest: BinaryIO) -> int:
        """Stream a file's content into ``dest``; returns the bytes written."""
        return await self._executor.download(self._ops.file_content(file_id), dest)

    async def create_batch(self, *, input_file_id: str, endpoint: str,
                           completion_window: str = "24h",
                           metadata: dict[str, str] | None = None) -> ProviderBatch:
        """Create a provider batch."""
        return await self._run(self._ops.create_batch(
            input_file_id=input_file_id, endpoint=endpoint,
            completion_window=completion_window, metadata=metadata))

    async def retrieve_batch(self, batch_id: str) -> ProviderBatch:
        """Fetch one batch."""
        return await self._run(self._ops.retrieve_batch(batch_id))

    async def list_batches_page(self, *, limit: int | None = None,
                                after: str | None = None) -> ProviderPage[ProviderBatch]:
        """One page of batches."""
        return await self._run(self._ops.list_batches_page(limit, after))

    async def list_batches(self, *, page_size: int = 100) -> AsyncIterator[ProviderBatch]:
        """Every batch, page after page via ``after``."""
        after: str | None = None
        while True:
            page = await self.list_batches_page(limit=page_size, after=after)
            for item in page.data:
                yield item
            if (after := next_cursor(page, after)) is None:
                return

    async def cancel_batch(self, batch_id: str) -> ProviderBatch:
        """Ask the provider to cancel a batch."""
        return await self._run(self._ops.cancel_batch(batch_id))


if TYPE_CHECKING:  # mypy proves the clients implement the protocols (no runtime cost)
    def _implements(sync: SyncProviderClient,
                    async_: AsyncProviderClient) -> tuple[Provider, AsyncProvider]:
        return sync, async_

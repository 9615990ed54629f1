"""batchyard: submit a JSONL of LLM requests, walk away, find every result in SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The SDK is re-exported lazily so ``import batchyard`` (and so every entry point, and
# ``batchyard --help``) does not pay for httpx and the adapters until an SDK call is used.
__all__ = [
    "Batch",
    "BatchList",
    "FileContent",
    "FileDeleted",
    "FileList",
    "FileObject",
    "__version__",
    "acancel_batch",
    "acreate_batch",
    "acreate_file",
    "afile_content",
    "afile_delete",
    "afile_list",
    "afile_retrieve",
    "alist_batches",
    "aretrieve_batch",
    "cancel_batch",
    "create_batch",
    "create_file",
    "file_content",
    "file_delete",
    "file_list",
    "file_retrieve",
    "list_batches",
    "retrieve_batch",
]
_SDK_EXPORTS = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from batchyard.sdk import (
        Batch,
        BatchList,
        FileContent,
        FileDeleted,
        FileList,
        FileObject,
        acancel_batch,
        acreate_batch,
        acreate_file,
        afile_content,
        afile_delete,
        afile_list,
        afile_retrieve,
        alist_batches,
        aretrieve_batch,
        cancel_batch,
        create_batch,
        create_file,
        file_content,
        file_delete,
        file_list,
        file_retrieve,
        list_batches,
        retrieve_batch,
    )


def __getattr__(name: str) -> Any:
    if name in _SDK_EXPORTS:
        from batchyard import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'batchyard' has no attribute {name!r}")

"""File bytes: a store every worker can reach (the database, or a local directory).

``build_store(settings, engine)`` picks one by ``settings.storage_backend``.
"""

from __future__ import annotations

from sqlalchemy import Engine

from batchyard.config import Settings
from batchyard.errors import ConfigError
from batchyard.storage.base import CHUNK_BYTES, FileStore
from batchyard.storage.database import FILE_CHUNKS, DatabaseFileStore
from batchyard.storage.local import LocalFileStore

__all__ = ["CHUNK_BYTES", "FILE_CHUNKS", "DatabaseFileStore", "FileStore", "LocalFileStore",
           "build_store"]


def build_store(settings: Settings, engine: Engine) -> FileStore:
    """The file store configured by ``settings.storage_backend`` (``database`` or ``local``)."""
    backend = settings.storage_backend.lower()
    if backend == "database":
        return DatabaseFileStore(engine)
    if backend == "local":
        return LocalFileStore(settings.data_dir / "files")
    raise ConfigError(f"unknown storage_backend {settings.storage_backend!r} "
                      "(use 'database' or 'local')")

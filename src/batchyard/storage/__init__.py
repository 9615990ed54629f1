"""File bytes: a store every worker can reach (the database, a local directory, or an
S3-compatible bucket).

``build_store(settings, engine)`` picks one by ``settings.storage_backend``.
"""

from __future__ import annotations

from sqlalchemy import Engine

from batchyard.config import Settings
from batchyard.errors import ConfigError
from batchyard.storage.base import CHUNK_BYTES, FileStore
from batchyard.storage.database import FILE_CHUNKS, DatabaseFileStore, side_engine
from batchyard.storage.local import LocalFileStore

__all__ = ["CHUNK_BYTES", "FILE_CHUNKS", "DatabaseFileStore", "FileStore", "LocalFileStore",
           "build_store"]


def build_store(settings: Settings, engine: Engine) -> FileStore:
    """The file store configured by ``settings.storage_backend``: ``database``, ``local``
    or ``s3`` (boto3 is imported only for ``s3``)."""
    backend = settings.storage_backend.lower()
    if backend == "database":
        # On SQLite new chunks go to a file of their own next to the database (64 KiB pages).
        return DatabaseFileStore(engine, chunk_engine=side_engine(engine))
    if backend == "local":
        return LocalFileStore(settings.data_dir / "files")
    if backend == "s3":
        from batchyard.storage.s3 import S3FileStore

        return S3FileStore.from_settings(settings.s3)
    raise ConfigError(f"unknown storage_backend {settings.storage_backend!r} "
                      "(use 'database', 'local' or 's3')")

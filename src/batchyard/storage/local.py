"""A directory on local (or shared network) disk; the embedded single-host default."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchyard.errors import StorageError
from batchyard.storage.base import CHUNK_BYTES, Meter, StoreShortcuts, check_key

logger = logging.getLogger(__name__)


class LocalFileStore(StoreShortcuts):
    """Files under ``root``, one per key.

    Writes go to a temporary name in ``root/.tmp`` and are renamed into place only when
    complete (and fsynced), so a reader never sees a half-written file and a crash leaves
    at most a stray temp file, never a truncated one under a real key.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        """Store ``chunks`` under ``key`` atomically; return ``(size, sha256 hex)``."""
        final = self._path(key)
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        meter = Meter(max_bytes)
        try:
            with tmp.open("wb") as f:
                for chunk in chunks:
                    meter.feed(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return meter.result()

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key`` in 1 MB chunks; StorageError at once if absent."""
        path = self._path(key)
        if not path.is_file():
            raise StorageError(f"nothing stored under {key!r}")
        return self._chunks(path, key)

    @staticmethod
    def _chunks(path: Path, key: str) -> Iterator[bytes]:
        try:
            f = path.open("rb")
        except FileNotFoundError as exc:  # deleted between the check and the first read
            raise StorageError(f"nothing stored under {key!r}") from exc
        with f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        """Is a file stored under ``key``?"""
        return self._path(key).is_file()

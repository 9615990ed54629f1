"""The file-store interface and what every store shares (key rules, size and hash metering)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from batchyard.errors import PayloadTooLargeError, StorageError

#: Stores move bytes in pieces of about this size, so memory stays bounded.
CHUNK_BYTES = 1 << 20
#: Keys are relative slash-separated names; the database column is String(200).
MAX_KEY_LENGTH = 200
#: Slash-separated segments; none may start with "." (no "..", no hidden names such as the
#: local store's ".tmp").
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")


@runtime_checkable
class FileStore(Protocol):
    """Bytes under a key, reachable from every worker that shares the store.

    ``put_stream`` is all or nothing: if the chunks raise (or exceed ``max_bytes``) nothing
    is left under the key and no partial file is ever visible to a reader. Putting an
    existing key replaces it.
    """

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        """Store ``chunks`` under ``key``; return ``(size, sha256 hex)``.

        Raises :class:`~batchyard.errors.PayloadTooLargeError` past ``max_bytes``.
        """
        ...

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key`` in chunks of at most about 1 MB.

        Raises :class:`~batchyard.errors.StorageError` at once when the key is absent.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""
        ...

    def exists(self, key: str) -> bool:
        """Is something stored under ``key``?"""
        ...

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Shorthand for ``put_stream(key, chunks)[0]`` (the size)."""
        ...

    def read(self, key: str) -> Iterator[bytes]:
        """Shorthand for :meth:`open_stream`."""
        ...


class StoreShortcuts:
    """``write``/``read`` spelled in terms of ``put_stream``/``open_stream``."""

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        raise NotImplementedError

    def open_stream(self, key: str) -> Iterator[bytes]:
        raise NotImplementedError

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Shorthand for ``put_stream(key, chunks)[0]`` (the size)."""
        return self.put_stream(key, chunks)[0]

    def read(self, key: str) -> Iterator[bytes]:
        """Shorthand for :meth:`open_stream`."""
        return self.open_stream(key)


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (``..``, absolute paths) or not fit."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise StorageError(f"invalid storage key {key[:MAX_KEY_LENGTH]!r}")
    return key


class Meter:
    """Counts and hashes bytes as they pass, enforcing an optional size limit."""

    __slots__ = ("max_bytes", "sha", "size")

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.sha = hashlib.sha256()

    def feed(self, chunk: bytes) -> None:
        """Account for ``chunk``; raises PayloadTooLargeError once past the limit."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise PayloadTooLargeError(f"the file is larger than {self.max_bytes:,} bytes")
        self.sha.update(chunk)

    def result(self) -> tuple[int, str]:
        """``(size, sha256 hex)`` of everything fed."""
        return self.size, self.sha.hexdigest()


def rechunk(chunks: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Regroup arbitrary chunks into pieces of exactly ``size`` bytes (the last may be less)."""
    buf = bytearray()
    for chunk in chunks:
        if not buf and len(chunk) == size:
            yield bytes(chunk)  # already the right size: skip the copy into buf
            continue
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)

"""The file-store interface and what every store shares (key rules, size and hash metering)."""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar, runtime_checkable

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

    def close(self) -> None:
        """Release what the store holds open (connections of its own), if anything."""
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

    def close(self) -> None:
        """Nothing to release (a store with connections of its own overrides this)."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (``..``, absolute paths) or not fit."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise StorageError(f"invalid storage key {key[:MAX_KEY_LENGTH]!r}")
    return key


_T = TypeVar("_T")
_R = TypeVar("_R")
_END = object()


class Aborted(Exception):
    """Raised inside a :class:`Handoff` consumer when the producer gave up."""


class Handoff(Generic[_T, _R]):
    """Feeds items to ``consume`` running on a thread of its own, through a short queue.

    The producer keeps parsing (or hashing) while the consumer writes, so the two overlap
    on separate cores; the queue holds at most ``depth`` items, so memory stays flat.
    :meth:`close` returns what ``consume`` returned; :meth:`abort` makes the consumer's
    iterator raise :class:`Aborted` (so a ``with engine.begin()`` in it rolls back). A
    failure in the consumer is raised to the producer at its next :meth:`put` or at
    :meth:`close`.
    """

    def __init__(self, consume: Callable[[Iterator[_T]], _R], *, depth: int = 2,
                 name: str = "batchyard-store-writer") -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._consume = consume
        self._result: _R | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator[_T]:
        while True:
            item = self._queue.get()
            if isinstance(item, Aborted):
                self._finished = True
                raise item
            if item is _END:
                self._finished = True
                return
            yield item  # type: ignore[misc]

    def _run(self) -> None:
        try:
            self._result = self._consume(self._items())
        except BaseException as exc:
            self._error = exc
        # A consumer that stopped early keeps taking items until the producer's end marker,
        # so the producer's put() never blocks for ever.
        while not self._finished:
            item = self._queue.get()
            self._finished = item is _END or isinstance(item, Aborted)

    def put(self, item: _T) -> None:
        """Hand one item over (waits while the queue is full)."""
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> _R:
        """No more items: wait for the consumer and return its result (or raise its error)."""
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def abort(self) -> None:
        """Give up: the consumer sees :class:`Aborted`; waits for it to finish."""
        self._queue.put(Aborted())
        self._thread.join()


class Meter:
    """Counts and hashes bytes as they pass, enforcing an optional size limit."""

    __slots__ = ("max_bytes", "sha", "size")

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.sha = hashlib.sha256()

    def count(self, chunk: bytes) -> None:
        """Count ``chunk`` without hashing it (the caller hashes elsewhere)."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise PayloadTooLargeError(f"the file is larger than {self.max_bytes:,} bytes")

    def feed(self, chunk: bytes) -> None:
        """Account for ``chunk``; raises PayloadTooLargeError once past the limit."""
        self.count(chunk)
        self.sha.update(chunk)

    def result(self) -> tuple[int, str]:
        """``(size, sha256 hex)`` of everything fed."""
        return self.size, self.sha.hexdigest()


def rechunk(chunks: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Regroup arbitrary chunks into pieces of exactly ``size`` bytes (the last may be less).

    Pieces are collected in a list and joined once per ``size`` bytes (one copy of the data,
    plus the slice of an output that spans two inputs), not appended to a growing buffer.
    """
    pending: list[bytes] = []
    have = 0
    for chunk in chunks:
        if not chunk:
            continue
        if not pending and len(chunk) == size:
            yield bytes(chunk)  # already the right size (no copy for bytes)
            continue
        pending.append(chunk)
        have += len(chunk)
        if have < size:
            continue
        joined = b"".join(pending)
        start = 0
        while have - start >= size:
            yield joined[start:start + size] if start or have > size else joined
            start += size
        pending = [joined[start:]] if start < have else []
        have -= start
    if pending:
        yield b"".join(pending)

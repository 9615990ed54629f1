"""Behaviour every FileStore must have; run against each store by the test modules."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import pytest

from batchyard.errors import PayloadTooLargeError, StorageError
from batchyard.storage import FileStore

#: Builds a store with the given chunk size (stores that read fixed-size files ignore it).
StoreFactory = Callable[[], FileStore]


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


class StoreContract:
    """Subclass with a ``store`` fixture; ``max_chunk`` is the store's read chunk bound."""

    max_chunk: int

    @pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 4321])
    def test_round_trip_returns_size_and_sha256(self, store: FileStore, size: int) -> None:
        data = os.urandom(size)
        assert store.put_stream("a/b.jsonl", pieces(data, 7)) == (
            size, hashlib.sha256(data).hexdigest())
        assert store.exists("a/b.jsonl")
        assert b"".join(store.open_stream("a/b.jsonl")) == data

    def test_reads_come_in_bounded_chunks(self, store: FileStore) -> None:
        data = os.urandom(self.max_chunk * 3 + 17)
        store.put_stream("big", [data])
        chunks = list(store.open_stream("big"))
        assert len(chunks) >= 4
        assert all(0 < len(c) <= self.max_chunk for c in chunks)
        assert b"".join(chunks) == data

    def test_max_bytes_rejects_and_leaves_nothing(self, store: FileStore) -> None:
        with pytest.raises(PayloadTooLargeError):
            store.put_stream("k", pieces(b"x" * 5000, 100), max_bytes=4999)
        assert not store.exists("k")
        assert store.put_stream("k", [b"x" * 4999], max_bytes=4999)[0] == 4999

    def test_failed_put_leaves_nothing_and_keeps_the_old_bytes(self,
                                                                store: FileStore) -> None:
        store.put_stream("k", [b"old"])

        def broken() -> Iterator[bytes]:
            yield b"new" * 1000
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            store.put_stream("k", broken())
        with pytest.raises(ConnectionResetError):
            store.put_stream("fresh", broken())
        assert b"".join(store.open_stream("k")) == b"old"
        assert not store.exists("fresh")

    def test_a_put_is_invisible_until_complete(self, store: FileStore) -> None:
        seen: list[bool] = []

        def watched() -> Iterator[bytes]:
            for _ in range(3):
                seen.append(store.exists("k"))
                yield b"y" * 700

        store.put_stream("k", watched())
        assert seen == [False, False, False]
        assert store.exists("k")

    def test_put_replaces(self, store: FileStore) -> None:
        store.put_stream("k", [b"first version, longer" * 100])
        store.put_stream("k", [b"second"])
        assert b"".join(store.open_stream("k")) == b"second"

    def test_missing_key_fails_at_open_not_later(self, store: FileStore) -> None:
        with pytest.raises(StorageError):
            store.open_stream("nope")
        assert not store.exists("nope")

    def test_delete_is_idempotent(self, store: FileStore) -> None:
        store.put_stream("k", [b"x"])
        store.delete("k")
        store.delete("k")
        assert not store.exists("k")
        with pytest.raises(StorageError):
            store.open_stream("k")

    def test_empty_file_exists(self, store: FileStore) -> None:
        assert store.put_stream("empty", []) == (0, hashlib.sha256(b"").hexdigest())
        assert store.exists("empty")
        assert b"".join(store.open_stream("empty")) == b""

    @pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/../b", "", "x" * 201,
                                     "spaces are bad", "a/./b", ".tmp/x", "a/.hidden", "a/"])
    def test_unsafe_keys_are_refused(self, store: FileStore, key: str) -> None:
        with pytest.raises(StorageError):
            store.put_stream(key, [b"x"])

    def test_ordinary_keys_are_fine(self, store: FileStore) -> None:
        key = "input/file-abc_1.part-2.jsonl"
        store.put_stream(key, [b"ok"])
        assert store.exists(key) and b"".join(store.open_stream(key)) == b"ok"

    def test_write_and_read_shorthands(self, store: FileStore) -> None:
        assert store.write("input/abc", iter([b"12", b"345"])) == 5
        assert b"".join(store.read("input/abc")) == b"12345"

    def test_keys_are_independent(self, store: FileStore) -> None:
        store.put_stream("a", [b"1"])
        store.put_stream("a2", [b"2"])
        store.delete("a")
        assert b"".join(store.open_stream("a2")) == b"2"

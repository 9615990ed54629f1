"""LocalFileStore: the contract, plus atomic rename on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard.config import Settings
from batchyard.storage import CHUNK_BYTES, DatabaseFileStore, LocalFileStore, build_store
from tests.unit.storage.stores import StoreContract


class TestLocalFileStore(StoreContract):
    max_chunk = CHUNK_BYTES

    @pytest.fixture()
    def store(self, tmp_path: Path) -> LocalFileStore:
        return LocalFileStore(tmp_path / "files")


def test_partial_upload_is_never_at_its_final_path(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    final = tmp_path / "input" / "x.jsonl"
    states: list[bool] = []

    def chunks() -> Iterator[bytes]:
        yield b"a" * 10
        states.append(final.exists())
        raise OSError("disk trouble")

    with pytest.raises(OSError, match="disk trouble"):
        store.put_stream("input/x.jsonl", chunks())
    assert states == [False] and not final.exists()
    assert list((tmp_path / ".tmp").iterdir()) == []  # the temp file is cleaned up too


def test_build_store_follows_settings(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    try:
        local = build_store(Settings(storage_backend="local", data_dir=tmp_path), engine)
        assert isinstance(local, LocalFileStore) and local.root == tmp_path / "files"
        assert isinstance(build_store(Settings(data_dir=tmp_path), engine), DatabaseFileStore)
        from batchyard.errors import ConfigError

        with pytest.raises(ConfigError):
            build_store(Settings(storage_backend="s3", data_dir=tmp_path), engine)
    finally:
        engine.dispose()

"""DatabaseFileStore on SQLite: the contract, transactions, and chunk-by-chunk reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, func, select

from batchyard.errors import StorageError
from batchyard.storage import FILE_CHUNKS, DatabaseFileStore
from batchyard.storage.database import SIDE_PAGE_BYTES, metadata, side_engine, side_path
from tests.unit.storage.stores import StoreContract

CHUNK = 1000


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def row_count(engine: Engine, key: str | None = None) -> int:
    query = select(func.count()).select_from(FILE_CHUNKS)
    if key is not None:
        query = query.where(FILE_CHUNKS.c.storage_key == key)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


class TestDatabaseFileStore(StoreContract):
    max_chunk = CHUNK

    @pytest.fixture()
    def store(self, engine: Engine) -> DatabaseFileStore:
        return DatabaseFileStore(engine, chunk_bytes=CHUNK)


def test_bytes_are_split_into_fixed_size_rows(engine: Engine) -> None:
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK)
    store.put_stream("k", [b"a" * 1500, b"b" * 1500, b"c"])
    assert row_count(engine, "k") == 4
    with engine.connect() as conn:
        sizes = conn.execute(select(func.length(FILE_CHUNKS.c.data))
                             .where(FILE_CHUNKS.c.storage_key == "k")
                             .order_by(FILE_CHUNKS.c.seq)).scalars().all()
    assert sizes == [1000, 1000, 1000, 1]


def test_a_failed_upload_leaves_no_rows(engine: Engine) -> None:
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK)

    def broken() -> Iterator[bytes]:
        yield b"z" * 5000  # several chunks already inserted in the transaction
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.put_stream("k", broken())
    assert row_count(engine) == 0


def test_reads_go_chunk_by_chunk(engine: Engine) -> None:
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK)
    store.put_stream("k", [b"q" * 3000])
    stream = store.open_stream("k")
    assert next(stream) == b"q" * CHUNK
    store.delete("k")  # the rest is fetched lazily, so it notices
    with pytest.raises(StorageError, match="changed while being read"):
        list(stream)


def test_default_chunk_is_about_a_megabyte(engine: Engine) -> None:
    store = DatabaseFileStore(engine)
    store.put_stream("k", [b"m" * (2 * 1024 * 1024 + 5)])
    assert row_count(engine, "k") == 3


def test_table_matches_the_orm_schema() -> None:
    from batchyard.db.models import FileChunkRow

    orm = FileChunkRow.__table__
    assert FILE_CHUNKS.name == orm.name
    assert [c.name for c in FILE_CHUNKS.columns] == [c.name for c in orm.columns]
    for ours in FILE_CHUNKS.columns:
        theirs = orm.columns[ours.name]
        assert type(ours.type) is type(theirs.type)
        assert (ours.primary_key, ours.nullable) == (theirs.primary_key, theirs.nullable)
        assert getattr(ours.type, "length", None) == getattr(theirs.type, "length", None)


def test_a_wal_database_is_checkpointed_after_the_put_and_keeps_its_autocheckpoint(
        tmp_path: Path) -> None:
    """The put's own commit skips SQLite's automatic checkpoint; one runs right after it on
    a thread of its own, and the pooled connections keep the default setting."""
    engine = create_engine(f"sqlite:///{tmp_path / 'wal.db'}", pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def wal_mode(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    metadata.create_all(engine)
    store = DatabaseFileStore(engine, chunk_bytes=64 * 1024)
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB: about 1,000 WAL frames
    store.put_stream("big", [payload])
    database = tmp_path / "wal.db"
    deadline = time.monotonic() + 30
    # Pages reach the database file only when a checkpoint copies them out of the WAL; no
    # other connection commits here, so the store's own background checkpoint did it.
    while database.stat().st_size < len(payload) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database.stat().st_size >= len(payload)
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        autocheckpoint = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert autocheckpoint == 1000  # the one pooled connection wrote, then was restored
    assert b"".join(store.open_stream("big")) == payload
    engine.dispose()


class TestSideFileStore(StoreContract):
    """The SQLite layout build_store picks: new chunks in a file of their own."""

    max_chunk = CHUNK

    @pytest.fixture()
    def store(self, engine: Engine) -> Iterator[DatabaseFileStore]:
        side = side_engine(engine)
        assert side is not None
        store = DatabaseFileStore(engine, chunk_bytes=CHUNK, chunk_engine=side)
        yield store
        store.close()


def test_sqlite_chunks_go_to_a_side_file_with_big_pages(engine: Engine, tmp_path: Path) -> None:
    side = side_engine(engine)
    assert side is not None
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK, chunk_engine=side)
    store.put_stream("k", [b"s" * 2500])
    assert side_path(str(tmp_path / "store.db")) == tmp_path / "store-files.db"
    assert row_count(engine, "k") == 0  # nothing in the main file
    assert row_count(side, "k") == 3
    with side.connect() as conn:
        raw: Any = conn.connection.driver_connection
        assert raw.execute("PRAGMA page_size").fetchone()[0] == SIDE_PAGE_BYTES
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_chunks_stored_before_the_side_file_stay_readable_and_deletable(
        engine: Engine) -> None:
    DatabaseFileStore(engine, chunk_bytes=CHUNK).put_stream("old", [b"o" * 1500])
    side = side_engine(engine)
    assert side is not None
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK, chunk_engine=side)
    store.put_stream("new", [b"n" * 10])
    assert store.exists("old") and store.exists("new")
    assert b"".join(store.open_stream("old")) == b"o" * 1500
    assert b"".join(store.open_stream("new")) == b"n" * 10
    store.delete("old")
    assert not store.exists("old") and row_count(engine) == 0
    with pytest.raises(StorageError):
        store.open_stream("old")
    store.close()


def test_a_failed_upload_leaves_no_rows_in_the_side_file(engine: Engine) -> None:
    side = side_engine(engine)
    assert side is not None
    store = DatabaseFileStore(engine, chunk_bytes=CHUNK, chunk_engine=side)

    def broken() -> Iterator[bytes]:
        yield b"z" * 5000
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.put_stream("k", broken())
    assert row_count(side) == 0 and not store.exists("k")
    store.close()


def test_only_a_sqlite_file_gets_a_side_file(tmp_path: Path) -> None:
    memory = create_engine("sqlite://")
    assert side_engine(memory) is None
    memory.dispose()
    from batchyard.config import Settings
    from batchyard.db.engine import make_engine, readonly_engine
    from batchyard.storage import build_store

    main = make_engine(f"sqlite:///{tmp_path / 'batchyard.db'}")
    store = build_store(Settings(data_dir=tmp_path), readonly_engine(main))
    assert isinstance(store, DatabaseFileStore)
    assert str(store.chunk_engine.url).endswith("batchyard-files.db")
    store.close()
    main.dispose()

"""DatabaseFileStore on real PostgreSQL (bytea chunks, transactions, concurrent readers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine, func, select, text

from batchyard.storage import FILE_CHUNKS, DatabaseFileStore
from tests.unit.storage.stores import StoreContract

pytestmark = pytest.mark.postgres

CHUNK = 1000


@pytest.fixture(scope="module")
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def table(pg_engine: Engine) -> Iterator[Table]:
    """The store's own table definition, in a throw-away schema (the shared test database
    may also get the full schema from migrations)."""
    schema = f"storage_{uuid.uuid4().hex[:8]}"
    with pg_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    copy = FILE_CHUNKS.to_metadata(MetaData(), schema=schema)
    copy.metadata.create_all(pg_engine)
    yield copy
    with pg_engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


class TestDatabaseFileStoreOnPostgres(StoreContract):
    max_chunk = CHUNK

    @pytest.fixture()
    def store(self, pg_engine: Engine, table: Table) -> DatabaseFileStore:
        return DatabaseFileStore(pg_engine, table=table, chunk_bytes=CHUNK)


def test_other_connections_see_nothing_until_commit(pg_engine: Engine, table: Table) -> None:
    store = DatabaseFileStore(pg_engine, table=table, chunk_bytes=CHUNK)
    visible: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"p" * CHUNK
            with pg_engine.connect() as conn:  # a different connection, like another worker
                visible.append(int(conn.execute(
                    select(func.count()).select_from(table)).scalar_one()))

    size, _ = store.put_stream("k", chunks())
    assert size == 4 * CHUNK
    assert visible == [0, 0, 0, 0]
    assert b"".join(store.open_stream("k")) == b"p" * 4 * CHUNK


def test_binary_data_round_trips_exactly(pg_engine: Engine, table: Table) -> None:
    store = DatabaseFileStore(pg_engine, table=table)
    data = bytes(range(256)) * 5000  # every byte value, across two 1 MB chunks
    store.put_stream("bin", [data])
    assert b"".join(store.open_stream("bin")) == data


@pytest.fixture()
def pg_database(postgres_url: str) -> Iterator[str]:
    from tests.e2e.helpers import fresh_pg_database

    with fresh_pg_database(postgres_url) as url:
        yield url


def test_migrated_chunks_are_not_pglz_compressed(pg_database: str) -> None:
    """After the migrations, chunk data is lz4-compressed (or stored uncompressed) and a
    stored chunk of ordinary JSONL really is lz4 on disk, not pglz."""
    from batchyard.db import migrate

    migrate.upgrade(pg_database)
    engine = create_engine(pg_database)
    try:
        with engine.connect() as conn:
            compression, storage = conn.execute(text(
                "SELECT attcompression, attstorage FROM pg_attribute "
                "WHERE attrelid = 'file_chunks'::regclass AND attname = 'data'")).one()
            lz4 = conn.execute(text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'")).scalar()
        assert (compression, storage) == (("l", "x") if lz4 else ("", "e"))
        line = b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions"}\n'
        DatabaseFileStore(engine).put_stream("k", [b"".join(line % i for i in range(30000))])
        with engine.connect() as conn:
            method = conn.execute(text(
                "SELECT pg_column_compression(data) FROM file_chunks WHERE storage_key = 'k' "
                "AND seq = 0")).scalar()
        assert method == ("lz4" if lz4 else None)
    finally:
        engine.dispose()

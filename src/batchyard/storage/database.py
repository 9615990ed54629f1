"""File bytes as ~1 MB chunk rows in SQL, so a worker on any host can read them.

The table is described here with SQLAlchemy Core (same name and columns as the ORM's
``FileChunkRow``, which the migrations create): storage must not import ``batchyard.db``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)

from batchyard.errors import StorageError
from batchyard.storage.base import (
    CHUNK_BYTES,
    Handoff,
    Meter,
    StoreShortcuts,
    check_key,
    rechunk,
)

logger = logging.getLogger(__name__)

#: Seconds the SQLite checkpoint thread is given to start before the upload goes on.
CHECKPOINT_HEAD_START = 0.02

#: Metadata of the storage package alone (tests may ``create_all`` it on a bare database).
metadata = MetaData()

FILE_CHUNKS = Table(
    "file_chunks", metadata,
    Column("storage_key", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("storage_key", "seq", name="pk_file_chunks"),
)


def _hash_all(sha: Any, pieces: Iterator[bytes]) -> None:
    """The hashing thread of a put: SHA-256 of every piece, in order."""
    for piece in pieces:
        sha.update(piece)


class DatabaseFileStore(StoreShortcuts):
    """Bytes under a key as numbered chunk rows ``(storage_key, seq, data)``.

    A put runs in one transaction (so a failed upload leaves no row, and readers never see
    a partial file) on a writer thread of its own, and hashes on another, so the database
    writes one chunk while the caller parses the next; an empty file is one empty chunk, so it still
    exists. On PostgreSQL the ``data`` column is lz4-compressed (or stored uncompressed
    where the server lacks lz4), not pglz: see the migration ``0400``. Reads fetch one
    chunk per query on a short-lived connection: memory stays at one chunk and no
    connection is held while a slow consumer takes its time.
    """

    def __init__(self, engine: Engine, *, table: Table = FILE_CHUNKS,
                 chunk_bytes: int = CHUNK_BYTES, chunk_engine: Engine | None = None) -> None:
        self.engine = engine
        #: Where new chunks go: ``engine`` itself, or (SQLite, see :func:`side_engine`) a
        #: database file of their own; reads and deletes also look in ``engine``, where
        #: chunks written before the side file existed stay.
        self.chunk_engine = chunk_engine if chunk_engine is not None else engine
        self.table = table
        self.chunk_bytes = chunk_bytes

    def _engines(self) -> tuple[Engine, ...]:
        """Where chunks may be: the chunk engine first, then the main one if it differs."""
        if self.chunk_engine is self.engine:
            return (self.engine,)
        return (self.chunk_engine, self.engine)

    def close(self) -> None:
        """Release the side file's connections (the main engine belongs to the caller)."""
        if self.chunk_engine is not self.engine:
            self.chunk_engine.dispose()

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        """Store ``chunks`` under ``key`` in one transaction; return ``(size, sha256 hex)``."""
        check_key(key)
        meter = Meter(max_bytes)
        hasher = Handoff(partial(_hash_all, meter.sha), depth=4, name="batchyard-store-hash")
        writer = Handoff(partial(self._write, key), depth=4)
        try:
            for piece in rechunk(chunks, self.chunk_bytes):
                meter.count(piece)
                hasher.put(piece)
                writer.put(piece)
        except BaseException:
            writer.abort()
            hasher.abort()
            raise
        try:
            writer.close()
        finally:
            hasher.close()
        return meter.result()

    def _write(self, key: str, pieces: Iterator[bytes]) -> None:
        """The writer thread: replace ``key``'s rows with ``pieces`` in one transaction.

        It inserts each piece while the caller parses the next one and a third thread hashes
        it (hashlib and both database drivers let go of the GIL, so the three share the
        cores); the transaction commits only after the last piece, and rolls
        back if the caller aborts. On PostgreSQL the inserts are pipelined (each is sent
        without waiting for the previous one's answer, so the server never idles between
        them). On SQLite this connection's commit does not run the WAL checkpoint: copying
        the file from the WAL into the database was half an upload's time; it runs on a
        thread of its own, while the caller records the file and answers
        (:meth:`_start_checkpoint`).
        """
        with self.chunk_engine.connect().execution_options(**WRITE) as conn:
            sqlite = conn.dialect.name == "sqlite"
            restore = None
            if sqlite:
                restore = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()  # ends the autobegun (empty) transaction
            try:
                with conn.begin():
                    self._insert_all(conn, key, pieces)
            finally:
                if restore is not None:
                    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(restore)}")
                    conn.commit()
        if sqlite:
            self._start_checkpoint()

    def _insert_all(self, conn: Connection, key: str, pieces: Iterator[bytes]) -> None:
        t = self.table
        conn.execute(delete(t).where(t.c.storage_key == key))
        seq = 0
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            raw: Any = conn.connection.driver_connection
            # The driver's own SQL for this table (schema and quoting included).
            statement = str(insert(t).compile(dialect=conn.dialect))
            with raw.pipeline(), raw.cursor() as cursor:
                for piece in pieces:
                    cursor.execute(statement, {"storage_key": key, "seq": seq, "data": piece})
                    seq += 1
        else:
            for piece in pieces:
                conn.execute(insert(t), {"storage_key": key, "seq": seq, "data": piece})
                seq += 1
        if seq == 0:
            conn.execute(insert(t), {"storage_key": key, "seq": 0, "data": b""})

    def _start_checkpoint(self) -> None:
        """SQLite: copy the WAL into the database file on a thread of its own, not waited for.

        Returns once that thread has had time to start the checkpoint, so it holds SQLite's
        checkpoint lock before the caller's next commit (the file row) could start one of
        its own on the request's time: that commit's automatic checkpoint then finds the
        lock taken and returns at once. (If it loses that race, the commit checkpoints
        instead: slower, never wrong.)
        """
        starting = threading.Event()
        threading.Thread(target=self._checkpoint, args=(starting,),
                         name="batchyard-store-checkpoint", daemon=True).start()
        starting.wait(5.0)
        # The caller is blocked on this thread, so sleeping hands the GIL to the checkpoint
        # thread, which enters SQLite (and takes its checkpoint lock) well within this.
        time.sleep(CHECKPOINT_HEAD_START)

    def _checkpoint(self, starting: threading.Event) -> None:
        """PASSIVE: waits for no reader or writer. A crash before or during it loses
        nothing: the frames stay in the WAL, and SQLite checkpoints them later."""
        try:
            with self.chunk_engine.connect() as conn:
                raw: Any = conn.connection.driver_connection
                starting.set()
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # housekeeping: the next commit's automatic checkpoint does it
            logger.warning("store.checkpoint_failed", exc_info=True)
        finally:
            starting.set()

    def _count(self, engine: Engine, key: str) -> int:
        t = self.table
        with engine.connect() as conn:
            last = conn.execute(select(func.max(t.c.seq)).where(t.c.storage_key == key)).scalar()
        return -1 if last is None else int(last) + 1

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key`` chunk by chunk; StorageError at once if absent."""
        check_key(key)
        for engine in self._engines():
            count = self._count(engine, key)
            if count >= 0:
                return self._chunks(engine, key, count)
        raise StorageError(f"nothing stored under {key!r}")

    def _chunks(self, engine: Engine, key: str, count: int) -> Iterator[bytes]:
        t = self.table
        query = select(t.c.data).where(t.c.storage_key == key)
        for seq in range(count):
            with engine.connect() as conn:
                data = conn.execute(query.where(t.c.seq == seq)).scalar()
            if data is None:  # deleted (or replaced) while we were reading it
                raise StorageError(f"{key!r} changed while being read (chunk {seq} is gone)")
            if data:
                yield bytes(data)

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""
        t = self.table
        for engine in self._engines():
            with engine.connect().execution_options(**WRITE) as conn, conn.begin():
                conn.execute(delete(t).where(t.c.storage_key == key))

    def exists(self, key: str) -> bool:
        """Is something stored under ``key``?"""
        t = self.table
        query = select(t.c.seq).where(t.c.storage_key == key, t.c.seq == 0)
        for engine in self._engines():
            with engine.connect() as conn:
                if conn.execute(query).first() is not None:
                    return True
        return False


#: SQLite page size of the side file: a 1 MiB chunk is 16 overflow pages instead of 256
#: (each page is one WAL frame, written with two system calls, then copied by the checkpoint).
SIDE_PAGE_BYTES = 65536
#: Execution option: this connection's transactions write (the side file begins them with
#: ``BEGIN IMMEDIATE``, so two writers queue on the busy timeout instead of failing).
WRITE = {"batchyard_store_write": True}


def side_path(database: str) -> Path:
    """The chunk file next to a SQLite database file: ``batchyard.db`` -> ``batchyard-files.db``."""
    main = Path(database)
    return main.with_name(f"{main.stem}-files{main.suffix or '.db'}")


def side_engine(engine: Engine) -> Engine | None:
    """For a SQLite database in a file, an engine on its chunk file (created on first use
    with 64 KiB pages, WAL, and the ``file_chunks`` table); None for anything else.

    Why a file of its own: SQLite's page size is one per database file. 64 KiB pages halve
    what SQLite spends on an upload's chunks (200 MB: insert CPU 0.29-0.33 -> 0.13-0.22 s,
    and the checkpoint about halves too; ``benchmarks/sqlite_chunk_pages.py``) but made
    create-like small transactions 2.5-3x slower, so the main file keeps its 4 KiB pages. A
    put and the file row it precedes were separate transactions already, so nothing needed
    both files in one commit.
    """
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = side_path(database)
    side = create_engine(f"sqlite:///{path}", connect_args={
        "timeout": SIDE_BUSY_TIMEOUT_S, "check_same_thread": False})
    event.listen(side, "connect", _side_connect)
    event.listen(side, "begin", _side_begin)
    return side


#: How long a writer of the side file waits for another one (seconds).
SIDE_BUSY_TIMEOUT_S = 30.0


def _side_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _side_begin
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={SIDE_PAGE_BYTES}")  # only takes effect on a new file
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(SIDE_BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS file_chunks (storage_key VARCHAR(200) NOT NULL, "
        "seq INTEGER NOT NULL, data BLOB NOT NULL, "
        "CONSTRAINT pk_file_chunks PRIMARY KEY (storage_key, seq))")
    cur.close()


def _side_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("batchyard_store_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

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
    delete,
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


class DatabaseFileStore(StoreShortcuts):
    """Bytes under a key as numbered chunk rows ``(storage_key, seq, data)``.

    A put runs in one transaction (so a failed upload leaves no row, and readers never see
    a partial file) on a writer thread of its own, which also hashes, so the database
    writes one chunk while the caller parses the next; an empty file is one empty chunk, so it still
    exists. On PostgreSQL the ``data`` column is lz4-compressed (or stored uncompressed
    where the server lacks lz4), not pglz: see the migration ``0400``. Reads fetch one
    chunk per query on a short-lived connection: memory stays at one chunk and no
    connection is held while a slow consumer takes its time.
    """

    def __init__(self, engine: Engine, *, table: Table = FILE_CHUNKS,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.engine = engine
        self.table = table
        self.chunk_bytes = chunk_bytes

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        """Store ``chunks`` under ``key`` in one transaction; return ``(size, sha256 hex)``."""
        check_key(key)
        meter = Meter(max_bytes)
        writer = Handoff(partial(self._write, key, meter.sha))
        try:
            for piece in rechunk(chunks, self.chunk_bytes):
                meter.count(piece)
                writer.put(piece)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        return meter.result()

    def _write(self, key: str, sha: Any, pieces: Iterator[bytes]) -> None:
        """The writer thread: replace ``key``'s rows with ``pieces`` in one transaction.

        It hashes each piece (hashlib lets go of the GIL) and inserts it while the caller
        parses the next one; the transaction commits only after the last piece, and rolls
        back if the caller aborts. On PostgreSQL the inserts are pipelined (each is sent
        without waiting for the previous one's answer, so the server never idles between
        them). On SQLite this connection's commit does not run the WAL checkpoint: copying
        the file from the WAL into the database was half an upload's time; it runs on a
        thread of its own, while the caller records the file and answers
        (:meth:`_start_checkpoint`).
        """
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            restore = None
            if sqlite:
                restore = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()  # ends the autobegun (empty) transaction
            try:
                with conn.begin():
                    self._insert_all(conn, key, sha, pieces)
            finally:
                if restore is not None:
                    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(restore)}")
                    conn.commit()
        if sqlite:
            self._start_checkpoint()

    def _insert_all(self, conn: Connection, key: str, sha: Any,
                    pieces: Iterator[bytes]) -> None:
        t = self.table
        conn.execute(delete(t).where(t.c.storage_key == key))
        seq = 0
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            raw: Any = conn.connection.driver_connection
            # The driver's own SQL for this table (schema and quoting included).
            statement = str(insert(t).compile(dialect=conn.dialect))
            with raw.pipeline(), raw.cursor() as cursor:
                for piece in pieces:
                    sha.update(piece)
                    cursor.execute(statement, {"storage_key": key, "seq": seq, "data": piece})
                    seq += 1
        else:
            for piece in pieces:
                sha.update(piece)
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
            with self.engine.connect() as conn:
                raw: Any = conn.connection.driver_connection
                starting.set()
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # housekeeping: the next commit's automatic checkpoint does it
            logger.warning("store.checkpoint_failed", exc_info=True)
        finally:
            starting.set()

    def _count(self, key: str) -> int:
        t = self.table
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(t.c.seq)).where(t.c.storage_key == key)).scalar()
        return -1 if last is None else int(last) + 1

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key`` chunk by chunk; StorageError at once if absent."""
        check_key(key)
        count = self._count(key)
        if count < 0:
            raise StorageError(f"nothing stored under {key!r}")
        return self._chunks(key, count)

    def _chunks(self, key: str, count: int) -> Iterator[bytes]:
        t = self.table
        query = select(t.c.data).where(t.c.storage_key == key)
        for seq in range(count):
            with self.engine.connect() as conn:
                data = conn.execute(query.where(t.c.seq == seq)).scalar()
            if data is None:  # deleted (or replaced) while we were reading it
                raise StorageError(f"{key!r} changed while being read (chunk {seq} is gone)")
            if data:
                yield bytes(data)

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.storage_key == key))

    def exists(self, key: str) -> bool:
        """Is something stored under ``key``?"""
        t = self.table
        with self.engine.connect() as conn:
            found = conn.execute(select(t.c.seq).where(t.c.storage_key == key,
                                                       t.c.seq == 0)).first()
        return found is not None

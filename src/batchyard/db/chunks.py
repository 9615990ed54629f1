"""File bytes as chunk rows in SQL: every worker on any host can read them.

A small store used by the pipeline when no other file store is configured. ``write`` runs in
one transaction, so a failed upload leaves no chunk behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Engine, delete, insert, select

from batchyard.db.engine import READONLY
from batchyard.db.models import FileChunkRow

CHUNK_BYTES = 1 << 20


class DatabaseChunkStore:
    """Bytes under a key, kept as ~1 MB chunk rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the chunks under ``key`` (all or nothing); returns bytes stored."""
        size, seq, buf = 0, 0, bytearray()
        with self.engine.begin() as conn:
            for chunk in chunks:
                buf += chunk
                size += len(chunk)
                while len(buf) >= CHUNK_BYTES:
                    conn.execute(insert(FileChunkRow),
                                 {"storage_key": key, "seq": seq,
                                  "data": bytes(buf[:CHUNK_BYTES])})
                    del buf[:CHUNK_BYTES]
                    seq += 1
            if buf or seq == 0:
                conn.execute(insert(FileChunkRow),
                             {"storage_key": key, "seq": seq, "data": bytes(buf)})
        return size

    def read(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key``, chunk by chunk (one row in memory at a time)."""
        seq = 0
        while True:
            with self.engine.connect().execution_options(**READONLY) as conn:
                data = conn.execute(select(FileChunkRow.data).where(
                    FileChunkRow.storage_key == key, FileChunkRow.seq == seq)).scalar()
            if data is None:
                return
            if data:
                yield bytes(data)
            seq += 1

    def delete(self, key: str) -> None:
        """Remove the bytes under ``key`` (no error when absent)."""
        with self.engine.begin() as conn:
            conn.execute(delete(FileChunkRow).where(FileChunkRow.storage_key == key))

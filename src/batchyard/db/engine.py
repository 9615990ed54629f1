"""Engine and session factory: SQLite (WAL, busy timeout) by default, PostgreSQL via psycopg."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for the lock before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url_or_engine: str | Engine) -> bool:
    """True when the URL (or engine) points at SQLite."""
    url = str(url_or_engine.url) if isinstance(url_or_engine, Engine) else url_or_engine
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL + busy_timeout so workers and the API can share it."""
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                  "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take the write lock up front instead so
        # two writers queue on busy_timeout rather than failing with "database is locked".
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Worker threads plus the poll tasks' thread pools share one engine per process. The
    # pool keeps 20: with 16 concurrent API clients a pool of 10 closed an overflow connection
    # at nearly every checkin and opened a new one (a PostgreSQL backend start) soon after.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


#: A pooled connection unused for this long is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping only connections that sat idle in the pool (``pool_pre_ping`` pings them all).

    A server restart or an idle timeout drops connections that nobody used for a while; those
    are checked (and replaced) on checkout. A connection used moments ago skips the round
    trip, which was a quarter of a ``GET /v1/batches/{id}``; if it did die in between, that
    one statement fails, SQLAlchemy invalidates the pool, and the next checkout reconnects.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        record.info["batchyard_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("batchyard_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool drops this connection and checks out another
            raise DisconnectionError("idle connection failed its ping") from exc


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to the engine (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Readers (marked with READONLY) begin deferred: in WAL mode they never block a writer.
    readonly = conn.get_execution_options().get("batchyard_readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


#: Execution options for read-only work (streaming file bytes, rendering results).
READONLY = {"batchyard_readonly": True}


def readonly_engine(engine: Engine) -> Engine:
    """The same engine (shared pool) whose transactions only read."""
    return engine.execution_options(**READONLY)


def ping(conn: Connection) -> None:
    """One trivial statement: raises when the database cannot answer."""
    conn.execute(text("SELECT 1"))

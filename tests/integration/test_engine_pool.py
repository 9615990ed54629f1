"""The PostgreSQL pool: idle connections are pinged and replaced, busy ones skip the ping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from batchyard.db import engine as engine_module
from batchyard.db.engine import make_engine


@pytest.fixture()
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def kill_backend(postgres_url: str, pid: int) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_connection_dropped_while_idle_is_replaced_on_checkout(
        pg_engine: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = backend_pid(pg_engine)
    kill_backend(postgres_url, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)

    assert backend_pid(pg_engine) != first


def test_a_recently_used_connection_is_handed_out_without_a_ping(
        pg_engine: Engine, postgres_url: str) -> None:
    # No ping within the idle window: the dead connection surfaces as one failed statement,
    # after which the pool reconnects by itself.
    first = backend_pid(pg_engine)
    kill_backend(postgres_url, first)

    with pytest.raises(sa.exc.OperationalError):
        backend_pid(pg_engine)
    assert backend_pid(pg_engine) != first

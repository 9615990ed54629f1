"""Alembic environment: the URL comes from Settings, the target is the package metadata."""

from __future__ import annotations

from alembic import context

from batchyard.config import Settings
from batchyard.db import schedules as _schedules  # noqa: F401  registers the schedule tables
from batchyard.db.engine import is_sqlite, make_engine
from batchyard.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # A URL set on the Config (tests, `batchyard db upgrade`) wins over the environment.
    explicit = config.get_main_option("sqlalchemy.url")
    return explicit or Settings().effective_database_url


def run_offline() -> None:
    """Emit SQL without a connection (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=is_sqlite(url))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run against a live database."""
    url = _url()
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=is_sqlite(url), compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

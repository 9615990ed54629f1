"""Run the packaged Alembic migrations programmatically (``batchyard db upgrade``, tests), and
check a database's schema version cheaply (every other CLI command).

Only ``up``, ``serve``, ``db upgrade`` and ``demo`` migrate. The other commands call
:func:`schema_state`, which reads ``alembic_version`` and compares it with the heads written in
the migration files, without importing Alembic's script machinery (the full upgrade check cost
seconds on every command).
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


class SchemaState(Enum):
    """How a database's schema compares with the migrations shipped in this package."""

    MISSING = "missing"  # no alembic_version table: never migrated
    BEHIND = "behind"  # migrated, but not to this package's head(s) (older, or newer)
    CURRENT = "current"


def alembic_config(url: str) -> Config:
    """An Alembic Config for the packaged migrations, bound to ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URLs may contain escaped passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrated schema differ (``alembic check``)."""
    from alembic import command

    command.check(alembic_config(url))


def head_revisions(versions_dir: Path = VERSIONS_DIR) -> frozenset[str]:
    """The revisions no other migration file names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions_dir.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(source)
        if down is not None:
            parents.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - parents)


def schema_state(engine: Engine) -> SchemaState:
    """MISSING, BEHIND or CURRENT: one small SELECT on ``alembic_version``."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            current = {row[0] for row in conn.execute(text(VERSIONS_SQL))}
    except DBAPIError:
        return SchemaState.MISSING
    return state_of(current)


#: The statement behind :func:`schema_state` (also run by the CLI's SQLite reader).
VERSIONS_SQL = "SELECT version_num FROM alembic_version"


def state_of(current: set[str]) -> SchemaState:
    """How the revisions recorded in ``alembic_version`` compare with this package's heads."""
    if not current:
        return SchemaState.MISSING
    return SchemaState.CURRENT if current == head_revisions() else SchemaState.BEHIND

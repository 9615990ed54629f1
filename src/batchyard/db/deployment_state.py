"""The deployment_state table: quota blocks and poll pauses (429) per deployment, and the
router's counter."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from batchyard.db.models import DeploymentStateRow

#: The deployment_state row whose counter drives round-robin / weighted choices.
ROUTER_ROW = "__router__"


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def blocked_until(session: Session) -> dict[str, float | None]:
    """deployment id -> the time before which it takes no new parts (router row left out)."""
    rows = session.execute(
        select(DeploymentStateRow.deployment_id, DeploymentStateRow.blocked_until)).all()
    return {dep: until for dep, until in rows if dep != ROUTER_ROW}


def block_deployment(session: Session, deployment_id: str, until: float) -> None:
    """Give a deployment no new parts before ``until`` (a later block is never shortened)."""
    stmt = _insert(session)(DeploymentStateRow).values(
        deployment_id=deployment_id, blocked_until=until, counter=0, updated_at=time.time())
    later = (func.max(func.coalesce(DeploymentStateRow.blocked_until, 0), until)
             if session.get_bind().dialect.name == "sqlite"
             else func.greatest(DeploymentStateRow.blocked_until, until))
    session.execute(stmt.on_conflict_do_update(
        index_elements=[DeploymentStateRow.deployment_id],
        set_={"blocked_until": later, "updated_at": time.time()}))


def bump_router_counter(session: Session) -> int:
    """Add one to the router's counter and return it."""
    # One atomic upsert: two workers choosing at once must not both insert the row.
    stmt = _insert(session)(DeploymentStateRow).values(deployment_id=ROUTER_ROW, counter=1,
                                                       updated_at=time.time())
    stmt = stmt.on_conflict_do_update(
        index_elements=[DeploymentStateRow.deployment_id],
        set_={"counter": DeploymentStateRow.counter + 1})
    return int(session.execute(stmt.returning(DeploymentStateRow.counter)).scalar_one())


def pause_polls(conn: Connection | Session, deployment_id: str, until: float) -> None:
    """Poll no part of a deployment before ``until`` (the provider answered 429); a later
    pause is never shortened."""
    dialect = (conn.get_bind() if isinstance(conn, Session) else conn).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    later = (func.max(func.coalesce(DeploymentStateRow.poll_paused_until, 0), until)
             if dialect == "sqlite"
             else func.greatest(DeploymentStateRow.poll_paused_until, until))
    stmt = insert(DeploymentStateRow).values(
        deployment_id=deployment_id, poll_paused_until=until, counter=0, updated_at=time.time())
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[DeploymentStateRow.deployment_id],
        set_={"poll_paused_until": later, "updated_at": time.time()}))


def polls_paused(conn: Connection | Session, now: float) -> dict[str, float]:
    """deployment id -> until when its polls are paused (only pauses still running)."""
    rows = conn.execute(select(DeploymentStateRow.deployment_id,
                               DeploymentStateRow.poll_paused_until)
                        .where(DeploymentStateRow.poll_paused_until > now)).all()
    return {str(dep): float(until) for dep, until in rows if until is not None}

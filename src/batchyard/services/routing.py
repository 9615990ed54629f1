"""Pick a deployment for a part from live load in SQL (enqueued tokens, quota blocks)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from batchyard.db.models import DeploymentStateRow, PartRow
from batchyard.domain.lifecycle import LIVE_PART_STATUSES, PartStatus
from batchyard.domain.routing import Deployment, DeploymentLoad, choose_deployment
from batchyard.services.container import Services

#: The deployment_state row whose counter drives round-robin / weighted choices.
ROUTER_ROW = "__router__"


def current_loads(session: Session) -> dict[str, DeploymentLoad]:
    """Enqueued (estimated) tokens per deployment over live parts, plus quota blocks."""
    enqueued = dict(session.execute(
        select(PartRow.deployment, func.sum(PartRow.estimated_tokens))
        .where(PartRow.status.in_(LIVE_PART_STATUSES), PartRow.deployment.is_not(None),
               PartRow.status != PartStatus.PENDING)
        .group_by(PartRow.deployment)).all())
    blocked = dict(session.execute(
        select(DeploymentStateRow.deployment_id, DeploymentStateRow.blocked_until)).all())
    ids = {str(k) for k in enqueued if k} | {k for k in blocked if k != ROUTER_ROW}
    return {dep_id: DeploymentLoad(dep_id, int(enqueued.get(dep_id) or 0), blocked.get(dep_id))
            for dep_id in ids}


def pick_deployment(svc: Services, session: Session, *, model: str | None,
                    provider: str | None, tokens: int) -> Deployment | None:
    """The deployment to send a part to now, or None when every candidate is full/blocked."""
    candidates = svc.deployments.for_model(model, provider)
    if not candidates:
        return None
    counter = _bump_counter(session)
    return choose_deployment(candidates, current_loads(session), tokens=tokens,
                             strategy=svc.deployments.strategy, now=time.time(),
                             counter=counter)


def block_deployment(session: Session, deployment_id: str, until: float) -> None:
    """Give a deployment no new parts before ``until`` (after token_limit_exceeded)."""
    stmt = _insert(session)(DeploymentStateRow).values(
        deployment_id=deployment_id, blocked_until=until, counter=0, updated_at=time.time())
    session.execute(stmt.on_conflict_do_update(
        index_elements=[DeploymentStateRow.deployment_id],
        set_={"blocked_until": func.max(func.coalesce(DeploymentStateRow.blocked_until, 0), until)
              if session.get_bind().dialect.name == "sqlite"
              else func.greatest(DeploymentStateRow.blocked_until, until),
              "updated_at": time.time()}))


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _bump_counter(session: Session) -> int:
    # One atomic upsert: two workers choosing at once must not both insert the row.
    stmt = _insert(session)(DeploymentStateRow).values(deployment_id=ROUTER_ROW, counter=1,
                                             updated_at=time.time())
    stmt = stmt.on_conflict_do_update(
        index_elements=[DeploymentStateRow.deployment_id],
        set_={"counter": DeploymentStateRow.counter + 1})
    return int(session.execute(stmt.returning(DeploymentStateRow.counter)).scalar_one())

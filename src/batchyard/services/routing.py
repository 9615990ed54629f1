"""Pick a deployment for a part from live load in SQL (enqueued tokens, quota blocks)."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from batchyard.db import deployment_state, parts
from batchyard.db.deployment_state import ROUTER_ROW, block_deployment
from batchyard.domain.routing import Deployment, DeploymentLoad, choose_deployment
from batchyard.services.container import Services

__all__ = ["ROUTER_ROW", "block_deployment", "current_loads", "pick_deployment"]


def current_loads(session: Session) -> dict[str, DeploymentLoad]:
    """Enqueued (estimated) tokens per deployment over live parts, plus quota blocks."""
    enqueued = parts.enqueued_tokens(session)
    blocked = deployment_state.blocked_until(session)
    return {dep_id: DeploymentLoad(dep_id, enqueued.get(dep_id, 0), blocked.get(dep_id))
            for dep_id in set(enqueued) | set(blocked)}


def pick_deployment(svc: Services, session: Session, *, model: str | None,
                    provider: str | None, tokens: int) -> Deployment | None:
    """The deployment to send a part to now, or None when every candidate is full/blocked."""
    candidates = svc.deployments.for_model(model, provider)
    if not candidates:
        return None
    counter = deployment_state.bump_router_counter(session)
    return choose_deployment(candidates, current_loads(session), tokens=tokens,
                             strategy=svc.deployments.strategy, now=time.time(),
                             counter=counter)

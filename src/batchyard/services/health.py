"""Health: liveness, readiness (database and broker reachable) and per-deployment checks.

A deployment is checked the way LiteLLM checks batch models: list its batches (limit 1). The
report names the deployment but never carries a key, and errors are reduced to their status
and code so a provider's message cannot leak anything we sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from batchyard.config import HttpSettings, Settings
from batchyard.db.engine import ping
from batchyard.deployments import DeploymentRegistry
from batchyard.domain.routing import Deployment
from batchyard.errors import ProviderError
from batchyard.providers import ProviderConfig, build_anthropic_provider, build_provider

logger = logging.getLogger(__name__)

#: Deployment checks fail fast: one attempt, short timeouts.
CHECK_HTTP = HttpSettings(connect_timeout=3.0, read_timeout=10.0, max_attempts=1,
                          retry_total_seconds=10.0)


class HealthServices(Protocol):
    """What this module needs from ``Services``."""

    settings: Settings
    engine: Engine


@dataclass(frozen=True)
class DeploymentHealth:
    """The result of checking one ``mode: batch`` deployment."""

    id: str
    model_name: str
    provider: str
    healthy: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The API / CLI shape."""
        return asdict(self)


def liveness() -> dict[str, str]:
    """The process is up (no dependency is consulted)."""
    return {"status": "ok"}


def check_database(engine: Engine) -> str | None:
    """None when ``SELECT 1`` works, else a short reason."""
    try:
        with engine.connect() as conn:
            ping(conn)
    except Exception as exc:  # any driver error means "not ready"
        return f"{type(exc).__name__}"
    return None


def check_broker(settings: Settings) -> str | None:
    """None when the Celery broker accepts a connection, else a short reason."""
    from kombu import Connection

    try:
        with Connection(settings.effective_broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises transport-specific errors
        return f"{type(exc).__name__}"
    return None


def readiness(svc: HealthServices) -> dict[str, Any]:
    """Database and broker reachability; ``ready`` only when both answer."""
    database = check_database(svc.engine)
    broker = check_broker(svc.settings)
    return {"status": "ready" if database is None and broker is None else "not_ready",
            "database": database or "ok", "broker": broker or "ok"}


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, ProviderError):
        bits = [type(exc).__name__]
        if exc.status is not None:
            bits.append(f"status={exc.status}")
        if exc.code:
            bits.append(f"code={exc.code}")
        return " ".join(bits)
    return type(exc).__name__


def check_deployment(dep: Deployment, http: HttpSettings = CHECK_HTTP) -> DeploymentHealth:
    """List one batch at the deployment; healthy if the provider answers."""
    config = ProviderConfig(kind=dep.provider, api_key=dep.api_key, api_base=dep.api_base,
                            api_version=dep.api_version)
    try:
        if dep.provider == "anthropic":
            with build_anthropic_provider(config, http) as claude:
                claude.list_batches_page(limit=1)
        else:
            with build_provider(config, http) as provider:
                provider.list_batches_page(limit=1)
    except Exception as exc:  # every failure is reported, none may stop the other checks
        logger.info("health.deployment_failed", extra={"deployment_id": dep.id})
        return DeploymentHealth(dep.id, dep.model_name, dep.provider, False,
                                _describe_failure(exc))
    return DeploymentHealth(dep.id, dep.model_name, dep.provider, True)


def check_deployments(registry: DeploymentRegistry, *,
                      check: Callable[[Deployment], DeploymentHealth] = check_deployment,
                      ) -> list[DeploymentHealth]:
    """Check every ``mode: batch`` deployment in parallel, in registry order."""
    targets = registry.batch_deployments()
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(check, targets))

"""The one composition function: Settings in, the shared service layer out.

The API lifespan, the Celery worker start-up and the CLI all call :func:`build_services`, so
the three front ends share one engine, one file store, one deployment registry and one way
of nudging the workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from batchyard.config import HttpSettings, Settings
from batchyard.db.engine import make_engine, make_sessions, readonly_engine
from batchyard.deployments import DeploymentRegistry, load_deployments
from batchyard.domain.routing import Deployment
from batchyard.services.prices import PriceBook
from batchyard.storage import FileStore, build_store

# The provider clients (httpx) and the broker (Celery) are imported when first used: a CLI
# command that only reads the database starts without them.
if TYPE_CHECKING:
    from batchyard.providers import ProviderConfig
    from batchyard.providers.anthropic import AnthropicClient
    from batchyard.providers.base import BatchClient
    from batchyard.providers.client import SyncProviderClient

#: ``nudge(task_name, object_id)``: ask the workers to look at an object soon. Only a hint;
#: the database says what is to be done, and the sweep re-sends lost nudges.
Nudge = Callable[[str, str], None]


class ProviderPool:
    """One provider client per deployment, created on first use and shared by threads."""

    def __init__(self, settings: Settings, deployments: DeploymentRegistry) -> None:
        self._settings = settings
        self._deployments = deployments
        self._clients: dict[tuple[str, bool], SyncProviderClient] = {}
        self._anthropic: dict[tuple[str, bool], AnthropicClient] = {}
        self._pollers: dict[str, SyncProviderClient | AnthropicClient] = {}
        self._lock = threading.Lock()

    def _http(self, once: bool) -> HttpSettings:
        http = self._settings.http
        return http.model_copy(update={"max_attempts": 1}) if once else http

    def anthropic_for(self, deployment_id: str, *, once: bool = False) -> AnthropicClient:
        """The Message Batches client of an Anthropic deployment (``once`` as below)."""
        from batchyard.providers import build_anthropic_provider

        with self._lock:
            client = self._anthropic.get((deployment_id, once))
            if client is None:
                dep = self._deployments.get(deployment_id)
                client = build_anthropic_provider(provider_config(dep), self._http(once),
                                                  label=deployment_id)
                self._anthropic[(deployment_id, once)] = client
            return client

    def batches_for(self, deployment_id: str) -> BatchClient:
        """The client that retrieves and cancels this deployment's batches, any provider."""
        if self._deployments.get(deployment_id).provider == "anthropic":
            return self.anthropic_for(deployment_id)
        return self.for_deployment(deployment_id)

    def poller_for(self, deployment_id: str) -> BatchClient:
        """The client polls use, any provider: its own keep-alive connections, no retries
        of its own (a failed poll is rescheduled, and a 429 is seen: it pauses the
        deployment), and a read timeout of at most ``poll_timeout_seconds``."""
        from batchyard.providers import build_anthropic_provider, build_provider

        with self._lock:
            client = self._pollers.get(deployment_id)
            if client is None:
                dep = self._deployments.get(deployment_id)
                http = self._settings.http
                http = http.model_copy(update={"max_attempts": 1, "read_timeout": min(
                    http.read_timeout, self._settings.pipeline.poll_timeout_seconds)})
                build = build_anthropic_provider if dep.provider == "anthropic" else (
                    build_provider)
                client = build(provider_config(dep), http, label=deployment_id)
                self._pollers[deployment_id] = client
            return client

    def for_deployment(self, deployment_id: str, *, once: bool = False) -> SyncProviderClient:
        """The client of the deployment with this id.

        ``once=True`` gives a client that never repeats a call by itself: the pipeline uses
        it for uploads and batch creation, where a blind retry after a lost answer could
        create a second object; it looks for the effect before trying again instead.
        """
        from batchyard.providers import build_provider

        with self._lock:
            client = self._clients.get((deployment_id, once))
            if client is None:
                dep = self._deployments.get(deployment_id)
                client = build_provider(provider_config(dep), self._http(once),
                                        label=deployment_id)
                self._clients[(deployment_id, once)] = client
            return client

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            for anthropic in self._anthropic.values():
                anthropic.close()
            for poller in self._pollers.values():
                poller.close()
            self._pollers.clear()
            self._clients.clear()
            self._anthropic.clear()


def provider_config(dep: Deployment) -> ProviderConfig:
    """The adapter configuration of one deployment."""
    from batchyard.providers import ProviderConfig

    return ProviderConfig(kind=dep.provider, api_key=dep.api_key, api_base=dep.api_base,
                          api_version=dep.api_version)


@dataclass
class Services:
    """Everything a use-case needs; built once per process by :func:`build_services`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: FileStore
    deployments: DeploymentRegistry
    nudge: Nudge
    providers: ProviderPool = field(repr=False)
    #: Batch prices (config overrides, then the bundled table), cached per model and day.
    prices: PriceBook = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.prices = PriceBook(self.deployments)

    def close(self) -> None:
        """Release connections and HTTP clients."""
        self.providers.close()
        self.store.close()  # the database store's side-file connections on SQLite
        self.engine.dispose()


def build_services(settings: Settings, *, nudge: Nudge | None = None,
                   deployments: DeploymentRegistry | None = None) -> Services:
    """Compose the service layer from ``settings`` (nudges go to the broker unless given:
    a pre-built message pushed straight to Redis or the embedded broker, else Celery)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessions(engine)
    registry = deployments if deployments is not None else load_deployments(settings)
    if nudge is None:
        from batchyard.broker.nudge import build_nudger

        nudge = build_nudger(settings)
    return Services(
        settings=settings, engine=engine, sessions=sessions,
        # Deferred (read) transactions for the store: on SQLite a worker reads an input file
        # while it holds the write lock for that file's request rows.
        store=build_store(settings, readonly_engine(engine)),
        deployments=registry,
        nudge=nudge,
        providers=ProviderPool(settings, registry),
    )

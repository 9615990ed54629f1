"""Adapters driven by httpx.MockTransport handlers: our retry rules and parsing, no network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from batchyard.config import HttpSettings
from batchyard.providers import ProviderConfig, build_operations
from batchyard.providers.client import AsyncProviderClient, SyncProviderClient
from batchyard.providers.http import AsyncExecutor, SyncExecutor

Handler = Callable[[httpx.Request], httpx.Response]
FAST = HttpSettings(max_attempts=4, backoff_initial=0.001, backoff_max=0.002,
                    retry_total_seconds=30.0, max_retry_after=5.0)
OPENAI = ProviderConfig(kind="openai", api_key="sk-test", api_base="http://provider.test/v1")


@dataclass
class Sleeps:
    """Records the delays the executor asked for instead of sleeping."""

    delays: list[float] = field(default_factory=list)

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)

    async def asleep(self, delay: float) -> None:
        self.delays.append(delay)


def sync_provider(handler: Handler | httpx.BaseTransport, sleeps: Sleeps,
                  config: ProviderConfig = OPENAI, http: HttpSettings = FAST
                  ) -> SyncProviderClient:
    """A sync adapter whose HTTP goes to ``handler``."""
    ops = build_operations(config)
    transport = handler if isinstance(handler, httpx.BaseTransport) else httpx.MockTransport(
        handler)
    client = httpx.Client(transport=transport, headers=ops.auth_headers())
    return SyncProviderClient(ops, SyncExecutor(client, http, sleep=sleeps))


def async_provider(handler: Handler, sleeps: Sleeps, config: ProviderConfig = OPENAI,
                   http: HttpSettings = FAST) -> AsyncProviderClient:
    """An async adapter whose HTTP goes to ``handler``."""
    ops = build_operations(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler),
                               headers=ops.auth_headers())
    return AsyncProviderClient(ops, AsyncExecutor(client, http, sleep=sleeps.asleep))


def batch_body(batch_id: str = "batch_1", status: str = "in_progress") -> dict[str, object]:
    """A minimal OpenAI batch object."""
    return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": "file-in", "completion_window": "24h", "status": status,
            "created_at": 1, "request_counts": {"total": 1, "completed": 0, "failed": 0}}


@pytest.fixture()
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"

"""Provider adapters: the only code that talks to OpenAI, Azure OpenAI and Anthropic.

    from batchyard.providers import ProviderConfig, build_provider, build_async_provider
    with build_provider(ProviderConfig(kind="openai", api_key=key)) as provider:
        provider.upload_file("input.jsonl")
"""

from __future__ import annotations

import httpx

from batchyard.config import HttpSettings
from batchyard.metrics.transport import async_metered, metered
from batchyard.providers.anthropic import (
    AnthropicClient,
    AsyncAnthropicClient,
    build_anthropic_provider,
    build_async_anthropic_provider,
)
from batchyard.providers.azure import AzureOperations
from batchyard.providers.base import (
    AsyncProvider,
    Provider,
    ProviderBatch,
    ProviderBatchError,
    ProviderConfig,
    ProviderFile,
    ProviderPage,
    ProviderRequestCounts,
)
from batchyard.providers.client import AsyncProviderClient, SyncProviderClient
from batchyard.providers.http import AsyncExecutor, SyncExecutor, build_timeout
from batchyard.providers.lending import LendingTransport
from batchyard.providers.openai import OpenAIOperations

__all__ = [
    "AnthropicClient",
    "AsyncAnthropicClient",
    "AsyncProvider",
    "AsyncProviderClient",
    "Provider",
    "ProviderBatch",
    "ProviderBatchError",
    "ProviderConfig",
    "ProviderFile",
    "ProviderPage",
    "ProviderRequestCounts",
    "SyncProviderClient",
    "build_anthropic_provider",
    "build_async_anthropic_provider",
    "build_async_provider",
    "build_operations",
    "build_provider",
]


def build_operations(config: ProviderConfig) -> OpenAIOperations:
    """The Files + Batches request builder for ``config.kind`` (Anthropic has its own
    client: :func:`build_anthropic_provider`)."""
    if config.kind == "anthropic":
        from batchyard.errors import ConfigError

        raise ConfigError("Anthropic has no Files API; use build_anthropic_provider")
    return AzureOperations(config) if config.kind == "azure" else OpenAIOperations(config)


def _headers(ops: OpenAIOperations) -> dict[str, str]:
    # Auth lives in the client's default headers, never in a Call, so it is never logged.
    return {**ops.auth_headers(), "Accept": "application/json"}


def build_provider(config: ProviderConfig, http: HttpSettings | None = None, *,
                   transport: httpx.BaseTransport | None = None,
                   label: str = "") -> SyncProviderClient:
    """A synchronous adapter; ``transport`` lets tests mount the emulator in-process.

    ``label`` (the deployment id) names the calls in the provider metrics. The client may be
    shared by threads: by default each request borrows a connection pool of its own
    (:class:`~batchyard.providers.lending.LendingTransport`)."""
    http = http or HttpSettings()
    ops = build_operations(config)
    client = httpx.Client(transport=metered(transport or LendingTransport(), label),
                          headers=_headers(ops),
                          timeout=build_timeout(http))
    return SyncProviderClient(ops, SyncExecutor(client, http))


def build_async_provider(config: ProviderConfig, http: HttpSettings | None = None, *,
                         transport: httpx.AsyncBaseTransport | None = None,
                         label: str = "") -> AsyncProviderClient:
    """An asynchronous adapter on ``httpx.AsyncClient``."""
    http = http or HttpSettings()
    ops = build_operations(config)
    client = httpx.AsyncClient(transport=async_metered(transport, label), headers=_headers(ops),
                               timeout=build_timeout(http))
    return AsyncProviderClient(ops, AsyncExecutor(client, http))

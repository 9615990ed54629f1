"""The Azure OpenAI adapter: the OpenAI adapter with Azure's URLs, auth and paging rules.

Two surfaces (Azure OpenAI REST reference, batch API): a dated ``api_version`` selects the legacy
``{endpoint}/openai/{files,batches}?api-version=...`` routes; ``None``, ``"v1"`` or
``"preview"`` select ``{endpoint}/openai/v1/...``. Files and batches are not
deployment-scoped, so the deployment name only ever appears inside the JSONL lines. Azure's
answer quirks (201 on upload, ``""`` file ids, ISO dates, no ``has_more``) are absorbed by
the shared tolerant parser in :mod:`batchyard.providers.wire`.
"""

from __future__ import annotations

from batchyard.errors import ConfigError
from batchyard.providers.base import ProviderConfig
from batchyard.providers.openai import OpenAIOperations

V1_VERSIONS = frozenset({"v1", "preview"})
#: The first dated api-version whose ``GET /files`` takes ``limit``/``after``/``order``.
FILES_PAGING_SINCE = "2025-04-01"
_SURFACE_SUFFIXES = ("/openai/v1", "/openai")


def is_v1(api_version: str | None) -> bool:
    """True when ``api_version`` selects the ``/openai/v1`` surface."""
    return api_version is None or api_version.strip().lower() in V1_VERSIONS


def resource_endpoint(api_base: str) -> str:
    """``https://res.openai.azure.com`` from any of the forms users paste in."""
    endpoint = api_base.strip().rstrip("/")
    for suffix in _SURFACE_SUFFIXES:
        if endpoint.endswith(suffix):
            return endpoint[: -len(suffix)]
    return endpoint


class AzureOperations(OpenAIOperations):
    """Request building for Azure OpenAI (legacy dated api-versions and v1)."""

    def __init__(self, config: ProviderConfig) -> None:
        if not config.api_base:
            raise ConfigError("Azure needs api_base (the resource endpoint, e.g. "
                              "https://my-resource.openai.azure.com)")
        super().__init__(config)
        self.legacy = not is_v1(config.api_version)
        surface = "/openai" if self.legacy else "/openai/v1"
        self.base_url = resource_endpoint(config.api_base) + surface

    def auth_headers(self) -> dict[str, str]:
        """An Entra token as a bearer token when given, else the ``api-key`` header."""
        if self.config.azure_ad_token is not None:
            return {"Authorization": f"Bearer {self.config.azure_ad_token.get_secret_value()}"}
        key = self.config.api_key
        return {"api-key": key.get_secret_value()} if key else {}

    def query(self, **params: str | int | None) -> dict[str, str | int]:
        """Adds ``api-version`` (required on legacy routes; ``preview`` opt-in on v1)."""
        version = self.config.api_version
        if self.legacy or (version and version.strip().lower() == "preview"):
            params = {**params, "api-version": version}
        return super().query(**params)

    def list_files_query(self, purpose: str | None, limit: int | None,
                         after: str | None) -> dict[str, str | int]:
        """2024-10-21 and older previews know only ``purpose`` (and send no ``has_more``)."""
        if self.legacy and (self.config.api_version or "") < FILES_PAGING_SINCE:
            return self.query(purpose=purpose)
        return super().list_files_query(purpose, limit, after)

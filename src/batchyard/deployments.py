"""The deployments batchyard may send batches to, from a LiteLLM-shaped ``config.yaml`` or env.

``config.yaml`` (path from ``Settings.config_file`` / ``BATCHYARD_CONFIG_FILE``)::

    model_list:
      - model_name: batch-gpt-4o-mini          # the group users write as "model"
        litellm_params:
          model: azure/gpt-4o-mini             # azure/<deployment>, openai/<model> or
                                               # anthropic/<model>
          api_key: os.environ/AZURE_API_KEY    # "os.environ/NAME" reads the environment
          api_base: os.environ/AZURE_API_BASE
          api_version: "2024-10-21"            # optional
        model_info:
          mode: batch                          # entries with another mode are not routed to
          id: east-1                           # optional stable id (default: derived hash)
          enqueued_token_quota: 5000000        # optional; alias max_enqueued_tokens
          weight: 2                            # optional, for the weighted strategy
          input_cost_per_token_batches: 0.000000075   # optional batch prices (USD/token);
          output_cost_per_token_batches: 0.0000003    # or input_cost_per_token / output_...
                                               # (halved for batch); they beat the table
    litellm_settings:
      enable_loadbalancing_on_batch_endpoints: true   # accepted (balancing is always on)
    batchyard_settings:
      batch_routing_strategy: least_loaded     # or round_robin, weighted
    # router_settings.routing_strategy is honoured too (LiteLLM names are mapped).

With the provider env keys set (``OPENAI_API_KEY`` [+ ``OPENAI_API_BASE``], ``AZURE_API_KEY``
+ ``AZURE_API_BASE`` [+ ``AZURE_API_VERSION``], ``ANTHROPIC_API_KEY`` [+
``ANTHROPIC_API_BASE``]) a catch-all deployment per provider is added (id ``openai`` /
``azure`` / ``anthropic``, model_name ``*``): it serves any model not named in the config and
keeps the JSONL's own model. With no config file, these are the only deployments.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import SecretStr

from batchyard.config import Settings, env_value
from batchyard.domain.pricing import PriceOverride, parse_price_override
from batchyard.domain.routing import Deployment, ProviderKind, normalize_strategy
from batchyard.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_MODEL_NAME = "*"
_ENV_PREFIX = "os.environ/"
_QUOTA_KEYS = ("enqueued_token_quota", "max_enqueued_tokens")


class DeploymentRegistry:
    """All configured deployments plus the routing strategy; lookups by id or model group."""

    def __init__(self, deployments: list[Deployment], *, strategy: str = "least_loaded") -> None:
        self._deployments = list(deployments)
        self._by_id = {dep.id: dep for dep in self._deployments}
        self.strategy = normalize_strategy(strategy)

    def all(self) -> list[Deployment]:
        """Every deployment, in config order (env catch-alls last)."""
        return list(self._deployments)

    def batch_deployments(self) -> list[Deployment]:
        """The deployments with ``mode: batch`` (those routed to and health-checked)."""
        return [dep for dep in self._deployments if dep.mode == "batch"]

    def get(self, deployment_id: str) -> Deployment:
        """The deployment with this id (KeyError names it when unknown)."""
        try:
            return self._by_id[deployment_id]
        except KeyError:
            raise KeyError(f"unknown deployment id {deployment_id!r}") from None

    def for_model(self, model_name: str | None, provider: str | None = None) -> list[Deployment]:
        """The deployments that may run a part for ``model_name`` (empty when none).

        Order of lookup: the model group of that name; else the env catch-all of the
        provider (OpenAI's when the provider is not forced and both exist); else the
        deployments whose provider model / Azure deployment name is that name.
        """
        usable = [dep for dep in self.batch_deployments()
                  if provider is None or dep.provider == provider]
        named = [dep for dep in usable if dep.model_name == model_name and dep.rewrites_model]
        if named:
            return named
        catch_all = self._catch_all(usable, provider)
        if catch_all or model_name is None:
            return catch_all
        return [dep for dep in usable if dep.rewrites_model and dep.model == model_name]

    @staticmethod
    def _catch_all(usable: list[Deployment], provider: str | None) -> list[Deployment]:
        env_deps = [dep for dep in usable if not dep.rewrites_model]
        if provider is None and len(env_deps) > 1:
            return [dep for dep in env_deps if dep.provider == "openai"][:1]
        return env_deps

    def describe(self) -> list[dict[str, object]]:
        """Secret-free summaries of every deployment."""
        return [dep.describe() for dep in self._deployments]

    def __len__(self) -> int:
        return len(self._deployments)

    def __repr__(self) -> str:
        ids = ", ".join(dep.id for dep in self._deployments)
        return f"DeploymentRegistry(strategy={self.strategy!r}, deployments=[{ids}])"


def load_deployments(settings: Settings) -> DeploymentRegistry:
    """Build the registry from ``settings.config_file`` (if any) plus the env catch-alls.

    Raises ConfigError naming the entry (index and model_name) for a bad config.
    """
    deployments: list[Deployment] = []
    strategy: str | None = None
    if settings.config_file is not None:
        raw = _read_yaml(Path(settings.config_file))
        deployments = _parse_model_list(raw, settings)
        strategy = _strategy_setting(raw)
    taken = {dep.id for dep in deployments}
    deployments += [dep for dep in _env_deployments(settings) if dep.id not in taken]
    registry = DeploymentRegistry(deployments, strategy=strategy or "least_loaded")
    logger.info("deployments.loaded", extra={"deployments": [d.id for d in deployments],
                                              "strategy": registry.strategy})
    return registry


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config file {path} must be a mapping at the top level")
    return raw


def _strategy_setting(raw: Mapping[str, Any]) -> str | None:
    ours = raw.get("batchyard_settings") or {}
    router = raw.get("router_settings") or {}
    if not isinstance(ours, Mapping) or not isinstance(router, Mapping):
        raise ConfigError("batchyard_settings and router_settings must be mappings")
    value = ours.get("batch_routing_strategy") or router.get("routing_strategy")
    return normalize_strategy(str(value)) if value else None


def _parse_model_list(raw: Mapping[str, Any], settings: Settings) -> list[Deployment]:
    entries = raw.get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError("model_list must be a list")
    deployments: list[Deployment] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(entries):
        dep = _EntryParser(index, entry, settings).parse()
        if dep.id in seen:
            raise ConfigError(f"model_list[{index}] (model_name={dep.model_name!r}): duplicate "
                              f"deployment id {dep.id!r} (also used by {seen[dep.id]})")
        seen[dep.id] = f"model_list entry with model_name={dep.model_name!r}"
        deployments.append(dep)
    return deployments


class _EntryParser:
    """Turns one ``model_list`` entry into a Deployment; errors name the entry."""

    def __init__(self, index: int, entry: Any, settings: Settings) -> None:
        self.index = index
        self.entry = entry if isinstance(entry, Mapping) else {}
        self.settings = settings
        self.model_name = str(self.entry.get("model_name") or "").strip()
        if not isinstance(entry, Mapping):
            self.fail("each model_list entry must be a mapping")

    def fail(self, message: str) -> NoReturn:
        label = f"model_list[{self.index}]"
        if self.model_name:
            label += f" (model_name={self.model_name!r})"
        raise ConfigError(f"{label}: {message}")

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.entry.get(name) or {}
        if not isinstance(value, Mapping):
            self.fail(f"{name} must be a mapping")
        return value

    def parse(self) -> Deployment:
        if not self.model_name:
            self.fail("model_name is missing")
        params, info = self.section("litellm_params"), self.section("model_info")
        provider, model = self._provider_model(params)
        api_key, api_base, api_version = self._credentials(params, provider)
        return Deployment(
            id=self._id(info, provider, model, api_base), model_name=self.model_name,
            provider=provider, model=model, api_key=api_key, api_base=api_base,
            api_version=api_version, enqueued_token_quota=self._quota(info),
            weight=self._weight(params, info), mode=str(info.get("mode") or "batch"),
            prices=self._prices(params, info),
        )

    def _prices(self, params: Mapping[str, Any], info: Mapping[str, Any]) -> PriceOverride | None:
        try:
            return parse_price_override(info, params)
        except ValueError as exc:
            self.fail(str(exc))

    def _provider_model(self, params: Mapping[str, Any]) -> tuple[ProviderKind, str]:
        spec = str(self.resolve(params.get("model"), "litellm_params.model") or "")
        prefix, sep, model = spec.partition("/")
        if not sep or not model:
            self.fail(f"litellm_params.model must be 'azure/<deployment>', 'openai/<model>' or "
                      f"'anthropic/<model>', got {spec!r}")
        if prefix in ("azure", "openai", "anthropic"):
            return prefix, model  # type: ignore[return-value]
        self.fail(f"unknown provider {prefix!r} in litellm_params.model (use azure/, openai/ "
                  "or anthropic/)")

    def _credentials(self, params: Mapping[str, Any],
                     provider: ProviderKind) -> tuple[SecretStr | None, str | None, str | None]:
        key = self.resolve(params.get("api_key"), "litellm_params.api_key")
        base = self.resolve(params.get("api_base"), "litellm_params.api_base")
        version = self.resolve(params.get("api_version"), "litellm_params.api_version")
        if provider == "azure":
            key_secret = SecretStr(key) if key else self.settings.azure_api_key
            base = base or self.settings.azure_api_base
            version = version or self.settings.azure_api_version
            if not base:
                self.fail("azure deployments need litellm_params.api_base (or AZURE_API_BASE)")
            return key_secret, base, version
        if provider == "anthropic":
            key_secret = SecretStr(key) if key else self.settings.anthropic_api_key
            return key_secret, base or self.settings.anthropic_api_base, version
        key_secret = SecretStr(key) if key else self.settings.openai_api_key
        return key_secret, base or self.settings.openai_api_base, version

    def resolve(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not text.startswith(_ENV_PREFIX):
            return text or None
        name = text[len(_ENV_PREFIX):]
        resolved = env_value(name)
        if not resolved:
            self.fail(f"{field} refers to environment variable {name!r}, which is not set")
        return resolved

    def _quota(self, info: Mapping[str, Any]) -> int | None:
        value = next((info[k] for k in _QUOTA_KEYS if info.get(k) is not None), None)
        if value is None:
            return None
        try:
            quota = int(value)
        except (TypeError, ValueError):
            quota = -1
        if quota <= 0:
            self.fail(f"model_info.enqueued_token_quota must be a positive integer, got {value!r}")
        return quota

    def _weight(self, params: Mapping[str, Any], info: Mapping[str, Any]) -> float:
        value = info.get("weight", params.get("weight", 1.0))
        try:
            weight = float(value)
        except (TypeError, ValueError):
            weight = -1.0
        if weight < 0:
            self.fail(f"weight must be a non-negative number, got {value!r}")
        return weight

    def _id(self, info: Mapping[str, Any], provider: str, model: str, base: str | None) -> str:
        if info.get("id") is not None:
            return str(info["id"])
        # Derived from what the entry points at, so ids survive reordering of the file.
        digest = hashlib.sha256(f"{self.model_name}|{provider}|{model}|{base or ''}".encode())
        return f"{provider}-{model}-{digest.hexdigest()[:8]}"


def _env_deployments(settings: Settings) -> list[Deployment]:
    found: list[Deployment] = []
    if settings.openai_api_key is not None:
        found.append(Deployment(id="openai", model_name=ENV_MODEL_NAME, provider="openai",
                                model="", api_key=settings.openai_api_key,
                                api_base=settings.openai_api_base))
    if settings.azure_api_key is not None and settings.azure_api_base:
        found.append(Deployment(id="azure", model_name=ENV_MODEL_NAME, provider="azure", model="",
                                api_key=settings.azure_api_key, api_base=settings.azure_api_base,
                                api_version=settings.azure_api_version))
    if settings.anthropic_api_key is not None:
        found.append(Deployment(id="anthropic", model_name=ENV_MODEL_NAME, provider="anthropic",
                                model="", api_key=settings.anthropic_api_key,
                                api_base=settings.anthropic_api_base))
    return found

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
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

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
        config = _parse_config(_read_yaml(Path(settings.config_file)))
        deployments = _parse_model_list(config, settings)
        strategy = config.strategy()
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


def _none_to_empty(value: Any) -> Any:
    return {} if value is None else value


class _Section(BaseModel):
    """A mapping of the config file; keys batchyard does not use are kept, not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)


class RoutingSection(_Section):
    """``batchyard_settings`` / ``router_settings``: the routing strategy, by either name."""

    batch_routing_strategy: str | None = None
    routing_strategy: str | None = None


class ConfigFile(_Section):
    """The top level of ``config.yaml``; entries of ``model_list`` are checked one by one."""

    model_list: list[Any] = Field(default_factory=list)
    batchyard_settings: RoutingSection = RoutingSection()
    router_settings: RoutingSection = RoutingSection()
    litellm_settings: dict[str, Any] = Field(default_factory=dict)

    _empty = field_validator("model_list", "batchyard_settings", "router_settings",
                             "litellm_settings", mode="before")(_none_to_empty)

    @field_validator("model_list", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [] if value == {} else value

    def strategy(self) -> str | None:
        """The configured strategy (ours wins over LiteLLM's router setting)."""
        value = (self.batchyard_settings.batch_routing_strategy
                 or self.router_settings.routing_strategy)
        return normalize_strategy(str(value)) if value else None


class LitellmParams(_Section):
    """``litellm_params``: where the deployment is and how to reach it."""

    model: str = ""
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    weight: float | None = None

    @field_validator("model", "api_key", "api_base", "api_version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value).strip()


class ModelInfo(_Section):
    """``model_info``: routing mode, stable id, quota and weight."""

    mode: str = "batch"
    id: str | None = None
    enqueued_token_quota: int | None = Field(
        default=None, validation_alias=AliasChoices(*_QUOTA_KEYS))
    weight: float | None = None

    @field_validator("mode", "id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("enqueued_token_quota", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        try:
            quota = None if value is None else int(value)
        except (TypeError, ValueError):
            quota = -1
        if quota is not None and quota <= 0:
            raise ValueError(f"must be a positive integer, got {value!r}")
        return quota


class ModelEntry(_Section):
    """One ``model_list`` entry."""

    model_name: str = ""
    litellm_params: LitellmParams = LitellmParams()
    model_info: ModelInfo = ModelInfo()

    _empty = field_validator("litellm_params", "model_info", mode="before")(_none_to_empty)

    @field_validator("model_name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return "" if value is None else str(value).strip()


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _parse_config(raw: Mapping[str, Any]) -> ConfigFile:
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file: {_validation_message(exc)}") from None


def _parse_model_list(config: ConfigFile, settings: Settings) -> list[Deployment]:
    deployments: list[Deployment] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(config.model_list):
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
        self.settings = settings
        self.model_name = ""
        if isinstance(entry, Mapping):
            self.model_name = str(entry.get("model_name") or "").strip()
        else:
            self.fail("each model_list entry must be a mapping")
        try:
            self.entry = ModelEntry.model_validate(entry)
        except ValidationError as exc:
            self.fail(_validation_message(exc))

    def fail(self, message: str) -> NoReturn:
        label = f"model_list[{self.index}]"
        if self.model_name:
            label += f" (model_name={self.model_name!r})"
        raise ConfigError(f"{label}: {message}")

    def parse(self) -> Deployment:
        if not self.model_name:
            self.fail("model_name is missing")
        params, info = self.entry.litellm_params, self.entry.model_info
        provider, model = self._provider_model(params)
        api_key, api_base, api_version = self._credentials(params, provider)
        return Deployment(
            id=self._id(info, provider, model, api_base), model_name=self.model_name,
            provider=provider, model=model, api_key=api_key, api_base=api_base,
            api_version=api_version, enqueued_token_quota=info.enqueued_token_quota,
            weight=self._weight(params, info), mode=info.mode or "batch",
            prices=self._prices(params, info),
        )

    def _prices(self, params: LitellmParams, info: ModelInfo) -> PriceOverride | None:
        try:
            return parse_price_override(info.model_dump(), params.model_dump())
        except ValueError as exc:
            self.fail(str(exc))

    def _provider_model(self, params: LitellmParams) -> tuple[ProviderKind, str]:
        spec = self.resolve(params.model, "litellm_params.model") or ""
        prefix, sep, model = spec.partition("/")
        if not sep or not model:
            self.fail(f"litellm_params.model must be 'azure/<deployment>', 'openai/<model>' or "
                      f"'anthropic/<model>', got {spec!r}")
        if prefix in ("azure", "openai", "anthropic"):
            return prefix, model  # type: ignore[return-value]
        self.fail(f"unknown provider {prefix!r} in litellm_params.model (use azure/, openai/ "
                  "or anthropic/)")

    def _credentials(self, params: LitellmParams,
                     provider: ProviderKind) -> tuple[SecretStr | None, str | None, str | None]:
        key = self.resolve(params.api_key, "litellm_params.api_key")
        base = self.resolve(params.api_base, "litellm_params.api_base")
        version = self.resolve(params.api_version, "litellm_params.api_version")
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

    def resolve(self, value: str | None, field: str) -> str | None:
        """The value, or the environment variable an ``os.environ/NAME`` value names."""
        if not value or not value.startswith(_ENV_PREFIX):
            return value or None
        name = value[len(_ENV_PREFIX):]
        resolved = env_value(name)
        if not resolved:
            self.fail(f"{field} refers to environment variable {name!r}, which is not set")
        return resolved

    def _weight(self, params: LitellmParams, info: ModelInfo) -> float:
        value = info.weight if info.weight is not None else params.weight
        weight = 1.0 if value is None else value
        if weight < 0:
            self.fail(f"weight must be a non-negative number, got {value!r}")
        return weight

    def _id(self, info: ModelInfo, provider: str, model: str, base: str | None) -> str:
        if info.id is not None:
            return info.id
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

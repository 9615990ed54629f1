"""Choosing a deployment for one part of a batch (load balancing over a model group).

Pure: the caller passes the candidate deployments, their current load and the clock; this
module only decides. The pipeline calls :func:`choose_deployment` once per part, so one
batch's parts may land on different deployments of the same model group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from batchyard.domain.pricing import PriceOverride
from batchyard.errors import ConfigError

ProviderKind = Literal["openai", "azure", "anthropic"]

#: Routing strategies understood by :func:`choose_deployment`.
STRATEGIES: tuple[str, ...] = ("least_loaded", "round_robin", "weighted")
DEFAULT_STRATEGY = "least_loaded"

# A low-discrepancy step (the golden ratio's fractional part): successive counters land
# evenly over [0, 1), so the "weighted" strategy spreads parts in proportion to the weights
# without any randomness (tests and replays see the same choices).
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class Deployment:
    """One provider endpoint that can run batches for a model group.

    ``model_name`` is the group name users write (in the JSONL or the create body);
    ``model`` is what is written into each JSONL line before upload (the provider model or
    the Azure deployment name). An empty ``model`` means "keep the JSONL's own model"
    (the env-only deployments, which serve any model).
    """

    id: str
    model_name: str
    provider: ProviderKind
    model: str
    api_key: SecretStr | None = None
    api_base: str | None = None
    api_version: str | None = None
    enqueued_token_quota: int | None = None
    weight: float = 1.0
    mode: str = "batch"
    #: Batch prices from ``config.yaml`` (they win over the price table).
    prices: PriceOverride | None = None

    @property
    def rewrites_model(self) -> bool:
        """Whether the JSONL's ``model`` must be replaced by :attr:`model` before upload."""
        return bool(self.model)

    def describe(self) -> dict[str, object]:
        """A secret-free summary (for logs, health output and ``repr``-like displays)."""
        return {
            "id": self.id, "model_name": self.model_name, "provider": self.provider,
            "model": self.model, "api_base": self.api_base, "api_version": self.api_version,
            "enqueued_token_quota": self.enqueued_token_quota, "weight": self.weight,
            "mode": self.mode, "has_api_key": self.api_key is not None,
        }


@dataclass(frozen=True)
class DeploymentLoad:
    """What is currently queued at one deployment.

    ``blocked_until`` is a clock value set after the deployment answered
    ``token_limit_exceeded``: it gets no new parts before then.
    """

    deployment_id: str
    enqueued_tokens: int = 0
    blocked_until: float | None = None


def _load_of(deployment: Deployment, loads: Mapping[str, DeploymentLoad]) -> DeploymentLoad:
    return loads.get(deployment.id) or DeploymentLoad(deployment.id)


def free_quota(deployment: Deployment, load: DeploymentLoad) -> float:
    """Tokens the deployment can still take (infinite when it has no quota)."""
    if deployment.enqueued_token_quota is None:
        return math.inf
    return float(deployment.enqueued_token_quota - load.enqueued_tokens)


def has_room(deployment: Deployment, load: DeploymentLoad, *, tokens: int, now: float) -> bool:
    """Whether a part of ``tokens`` tokens may be sent to ``deployment`` now.

    A part larger than the whole quota may still go to an idle deployment, otherwise it
    could never run anywhere; the provider is then the judge.
    """
    if load.blocked_until is not None and load.blocked_until > now:
        return False
    if deployment.enqueued_token_quota is None or load.enqueued_tokens <= 0:
        return True
    return tokens <= free_quota(deployment, load)


def _rotated(items: Sequence[Deployment], counter: int) -> list[Deployment]:
    if not items:
        return []
    start = counter % len(items)
    return [*items[start:], *items[:start]]


def _least_loaded(eligible: Sequence[Deployment], loads: Mapping[str, DeploymentLoad],
                  counter: int) -> Deployment:
    # Rotating first makes ties (e.g. several idle deployments without a quota) share parts
    # instead of always landing on the first entry of the config.
    def key(dep: Deployment) -> tuple[float, float]:
        load = _load_of(dep, loads)
        return (free_quota(dep, load), -float(load.enqueued_tokens))

    return max(_rotated(eligible, counter), key=key)


def _round_robin(candidates: Sequence[Deployment], eligible: Sequence[Deployment],
                 counter: int) -> Deployment:
    # Walk the full candidate ring from the counter's slot so the order stays stable when a
    # deployment is temporarily skipped.
    allowed = {dep.id for dep in eligible}
    return next(dep for dep in _rotated(candidates, counter) if dep.id in allowed)


def _weighted(eligible: Sequence[Deployment], counter: int) -> Deployment:
    weights = [max(dep.weight, 0.0) for dep in eligible]
    total = sum(weights)
    if total <= 0:
        return eligible[counter % len(eligible)]
    point = ((counter * _GOLDEN) % 1.0) * total
    for dep, weight in zip(eligible, weights, strict=True):
        if point < weight:
            return dep
        point -= weight
    return eligible[-1]


def normalize_strategy(name: str | None) -> str:
    """Map a configured strategy name (ours or LiteLLM's spelling) to one of STRATEGIES."""
    if not name:
        return DEFAULT_STRATEGY
    key = name.strip().lower().replace("-", "_")
    aliases = {"simple_shuffle": "weighted", "least_busy": "least_loaded",
               "usage_based_routing": "least_loaded", "usage_based_routing_v2": "least_loaded"}
    key = aliases.get(key, key)
    if key not in STRATEGIES:
        raise ConfigError(f"unknown routing strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    return key


def choose_deployment(candidates: Sequence[Deployment], loads: Mapping[str, DeploymentLoad], *,
                      tokens: int, strategy: str = DEFAULT_STRATEGY, now: float,
                      counter: int = 0) -> Deployment | None:
    """Pick the deployment for a part of ``tokens`` tokens, or None if nobody has room now.

    Strategies: ``least_loaded`` (most free enqueued-token quota), ``round_robin`` (the
    ``counter``-th deployment in turn) and ``weighted`` (in proportion to ``weight``). All of
    them skip deployments that are blocked (``blocked_until > now``) or lack room.
    """
    kind = normalize_strategy(strategy)
    eligible = [dep for dep in candidates
                if has_room(dep, _load_of(dep, loads), tokens=tokens, now=now)]
    if not eligible:
        return None
    if kind == "round_robin":
        return _round_robin(candidates, eligible, counter)
    if kind == "weighted":
        return _weighted(eligible, counter)
    return _least_loaded(eligible, loads, counter)

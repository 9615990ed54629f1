"""Routing: which deployment gets the next part, per strategy, honouring quotas and blocks."""

from __future__ import annotations

from collections import Counter

import pytest

from batchyard.domain.routing import (
    Deployment,
    DeploymentLoad,
    choose_deployment,
    normalize_strategy,
)
from batchyard.errors import ConfigError


def dep(dep_id: str, quota: int | None = None, weight: float = 1.0) -> Deployment:
    return Deployment(id=dep_id, model_name="group", provider="azure", model=f"m-{dep_id}",
                      api_base="https://example.invalid", enqueued_token_quota=quota,
                      weight=weight)


A, B, C = dep("a", 1000), dep("b", 3000), dep("c", 2000)


def test_least_loaded_picks_the_most_free_quota() -> None:
    loads = {"a": DeploymentLoad("a", 0), "b": DeploymentLoad("b", 2500),
             "c": DeploymentLoad("c", 500)}
    # free: a=1000, b=500, c=1500
    assert choose_deployment([A, B, C], loads, tokens=100, now=0.0).id == "c"


def test_least_loaded_is_the_default_and_counts_missing_loads_as_idle() -> None:
    assert choose_deployment([A, B, C], {}, tokens=10, now=0.0).id == "b"


def test_least_loaded_spreads_parts_in_proportion_to_free_quota() -> None:
    enqueued = {"a": 0, "b": 0, "c": 0}
    for n in range(12):
        loads = {k: DeploymentLoad(k, v) for k, v in enqueued.items()}
        chosen = choose_deployment([A, B, C], loads, tokens=500, now=0.0, counter=n)
        assert chosen is not None
        enqueued[chosen.id] += 500
    assert enqueued == {"a": 1000, "b": 3000, "c": 2000}


def test_nobody_with_room_returns_none() -> None:
    loads = {"a": DeploymentLoad("a", 900), "b": DeploymentLoad("b", 2900),
             "c": DeploymentLoad("c", 1950)}
    assert choose_deployment([A, B, C], loads, tokens=200, now=0.0) is None


def test_a_blocked_deployment_gets_nothing_until_its_block_expires() -> None:
    loads = {"b": DeploymentLoad("b", 0, blocked_until=100.0)}
    before = choose_deployment([A, B, C], loads, tokens=10, now=99.0)
    after = choose_deployment([A, B, C], loads, tokens=10, now=100.0)
    assert before is not None and before.id == "c"
    assert after is not None and after.id == "b"


def test_an_oversized_part_may_go_to_an_idle_deployment() -> None:
    busy = {"b": DeploymentLoad("b", 1), "c": DeploymentLoad("c", 1)}
    chosen = choose_deployment([A, B, C], busy, tokens=50_000, now=0.0)
    assert chosen is not None and chosen.id == "a"
    everyone_busy = {k: DeploymentLoad(k, 1) for k in "abc"}
    assert choose_deployment([A, B, C], everyone_busy, tokens=50_000, now=0.0) is None


def test_unlimited_deployments_share_ties_by_counter() -> None:
    free = [dep("x"), dep("y")]
    picks = {choose_deployment(free, {}, tokens=1, now=0.0, counter=n).id for n in range(4)}
    assert picks == {"x", "y"}


def test_round_robin_cycles_and_skips_blocked() -> None:
    picks = [choose_deployment([A, B, C], {}, tokens=1, strategy="round_robin", now=0.0,
                               counter=n).id for n in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]
    loads = {"b": DeploymentLoad("b", blocked_until=10.0)}
    picks = [choose_deployment([A, B, C], loads, tokens=1, strategy="round-robin", now=0.0,
                               counter=n).id for n in range(3)]
    assert picks == ["a", "c", "c"]


def test_weighted_spreads_in_proportion_to_weight() -> None:
    heavy, light = dep("heavy", weight=3.0), dep("light", weight=1.0)
    counts = Counter(choose_deployment([heavy, light], {}, tokens=1, strategy="weighted",
                                       now=0.0, counter=n).id for n in range(400))
    assert 280 <= counts["heavy"] <= 320
    assert counts["light"] == 400 - counts["heavy"]


def test_weighted_never_picks_a_zero_weight_deployment_when_others_exist() -> None:
    zero, one = dep("zero", weight=0.0), dep("one", weight=1.0)
    picks = {choose_deployment([zero, one], {}, tokens=1, strategy="weighted", now=0.0,
                               counter=n).id for n in range(50)}
    assert picks == {"one"}


@pytest.mark.parametrize(("name", "expected"), [
    (None, "least_loaded"), ("simple-shuffle", "weighted"), ("least-busy", "least_loaded"),
    ("ROUND_ROBIN", "round_robin"),
])
def test_strategy_names_are_normalized(name: str | None, expected: str) -> None:
    assert normalize_strategy(name) == expected


def test_an_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown routing strategy 'fastest'"):
        choose_deployment([A], {}, tokens=1, strategy="fastest", now=0.0)


def test_describe_and_repr_never_show_the_key() -> None:
    from pydantic import SecretStr

    secret = Deployment(id="s", model_name="g", provider="openai", model="gpt-4o-mini",
                        api_key=SecretStr("sk-very-secret"))
    assert "sk-very-secret" not in repr(secret)
    assert "sk-very-secret" not in str(secret.describe())
    assert secret.describe()["has_api_key"] is True

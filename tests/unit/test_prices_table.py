"""Batch prices from the bundled genai-prices table and config.yaml overrides."""

from __future__ import annotations

from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

from batchyard.config import Settings
from batchyard.deployments import DeploymentRegistry, load_deployments
from batchyard.domain.pricing import Price, PriceOverride, Unpriced, request_cost
from batchyard.domain.routing import Deployment
from batchyard.services.prices import PriceBook, table_version

_M = Decimal(1_000_000)


def _book(*deps: Deployment) -> PriceBook:
    return PriceBook(DeploymentRegistry(list(deps)))


def test_openai_models_get_the_tables_batch_variant_and_its_version() -> None:
    price = _book().lookup(deployment_id=None, model="gpt-4o-mini-2024-07-18",
                           provider="openai")
    assert isinstance(price, Price)
    assert (price.input * _M, price.output * _M) == (Decimal("0.075"), Decimal("0.3"))
    assert price.source == f"genai-prices {version('genai-prices')}" == table_version()
    assert request_cost(price, input_tokens=1_000_000, output_tokens=1_000_000) == Decimal(
        "0.375")


def test_anthropic_models_are_priced_at_batch_rates_with_cached_input() -> None:
    price = _book().lookup(deployment_id=None, model="claude-haiku-4-5", provider="anthropic")
    assert isinstance(price, Price)
    assert (price.input * _M, price.output * _M) == (Decimal("0.5"), Decimal("2.5"))
    assert price.cached_input is not None and price.cached_input * _M == Decimal("0.05")
    # Prompt-cache writes cost 1.25x input (5-minute cache), also at the batch discount.
    assert price.cache_write is not None and price.cache_write * _M == Decimal("0.625")


def test_a_deployment_override_wins_over_the_table() -> None:
    dep = Deployment(id="east", model_name="mini", provider="azure", model="my-mini",
                     api_base="https://x", prices=PriceOverride(Decimal("1e-7"), Decimal("2e-7")))
    price = _book(dep).lookup(deployment_id="east", model="gpt-4o-mini")
    assert isinstance(price, Price)
    assert (price.input, price.output, price.source) == (Decimal("1e-7"), Decimal("2e-7"),
                                                         "config:east")


def test_an_azure_deployment_without_override_uses_the_openai_model_price() -> None:
    dep = Deployment(id="east", model_name="mini", provider="azure", model="my-mini",
                     api_base="https://x")
    price = _book(dep).lookup(deployment_id="east", model="gpt-4o-mini-2024-07-18")
    assert isinstance(price, Price) and price.input * _M == Decimal("0.075")


def test_an_unknown_model_is_unpriced_with_the_reason() -> None:
    found = _book().lookup(deployment_id=None, model="my-finetune-xyz", provider="openai")
    assert isinstance(found, Unpriced)
    assert "my-finetune-xyz" in found.reason and "input_cost_per_token_batches" in found.reason
    assert isinstance(_book().lookup(deployment_id=None, model=None), Unpriced)


def test_config_yaml_prices_use_litellms_field_names(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: mini\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-x}\n"
        "    model_info: {id: a, input_cost_per_token: 0.0000002,"
        " output_cost_per_token: 0.0000008}\n"
        "  - model_name: mini\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-x,"
        " input_cost_per_token_batches: 0.00000005, output_cost_per_token_batches: 0.0000002}\n"
        "    model_info: {id: b}\n")
    registry = load_deployments(Settings(config_file=config, data_dir=tmp_path))
    a, b = registry.get("a").prices, registry.get("b").prices
    assert a is not None and (a.input, a.output) == (Decimal("1E-7"), Decimal("4E-7"))
    assert b is not None and (b.input, b.output) == (Decimal("5E-8"), Decimal("2E-7"))


def test_an_anthropic_deployment_is_priced_from_the_anthropic_table() -> None:
    dep = Deployment(id="claude", model_name="haiku", provider="anthropic",
                     model="claude-haiku-4-5")
    price = _book(dep).lookup(deployment_id="claude", model="claude-haiku-4-5-20251001")
    assert isinstance(price, Price)
    assert (price.input * _M, price.output * _M) == (Decimal("0.5"), Decimal("2.5"))
    # 1,000 input of which 800 read from the cache, 100 output, at batch rates.
    assert request_cost(price, input_tokens=1_000, output_tokens=100, cached_tokens=800) == (
        Decimal(200) * Decimal("0.5") + Decimal(800) * Decimal("0.05")
        + Decimal(100) * Decimal("2.5")) / 10**6


def test_ingest_prices_a_claude_answer_with_cache_writes_above_plain_input() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from batchyard.domain.jsonl import iter_output_lines
    from batchyard.services.costs import RowPricer

    dep = Deployment(id="claude", model_name="claude", provider="anthropic",
                     model="claude-haiku-4-5")
    svc = cast(Any, SimpleNamespace(prices=_book(dep)))
    pricer = RowPricer(svc, cast(Any, SimpleNamespace(deployment="claude")),
                       cast(Any, SimpleNamespace(model="claude-haiku-4-5", created_at=1.7e9)))
    usage = {"input_tokens": 1_000, "output_tokens": 100, "cache_read_input_tokens": 0}

    def cost(**cache: int) -> int:
        body = {"type": "message", "model": "claude-haiku-4-5", "content": [],
                "usage": {**usage, **cache}}
        line = b'{"custom_id":"a","response":{"status_code":200,"body":%s}}\n' % (
            __import__("orjson").dumps(body))
        (parsed,) = iter_output_lines([line])
        value = pricer.values(parsed)[1]
        assert value is not None
        return value

    plain = cost()
    # 4,000 more prompt tokens written to the cache cost 0.625 $/M each at batch rates,
    # read from it 0.05 $/M.
    assert cost(cache_creation_input_tokens=4_000) - plain == 4_000 * 625_000
    assert cost(cache_read_input_tokens=4_000) - plain == 4_000 * 50_000

"""Pricing maths: exact amounts, LiteLLM-named overrides, output limits, budgets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batchyard.domain.pricing import (
    Price,
    budget_refusal,
    default_output_tokens,
    from_pico,
    line_output_limit,
    parse_price_override,
    request_cost,
    request_cost_pico,
    to_pico,
)

# gpt-4o-mini at batch rates: $0.075 / $0.30 per million, cached input $0.0375.
MINI = Price(Decimal("0.075") / 10**6, Decimal("0.3") / 10**6, Decimal("0.0375") / 10**6, "t")


def test_a_request_costs_input_plus_output_at_batch_rates_exactly() -> None:
    cost = request_cost(MINI, input_tokens=1_000, output_tokens=500)
    assert cost == Decimal("0.000225")  # 1000 * 7.5e-8 + 500 * 3e-7
    assert request_cost_pico(MINI, 1_000, 500) == 225_000_000
    assert from_pico(to_pico(cost)) == cost


def test_cached_input_tokens_are_charged_at_the_cached_rate() -> None:
    cost = request_cost(MINI, input_tokens=1_000, output_tokens=0, cached_tokens=400)
    assert cost == Decimal(600) * Decimal("7.5e-8") + Decimal(400) * Decimal("3.75e-8")
    assert request_cost_pico(MINI, 1_000, 0, 400) == to_pico(cost)


def test_without_a_cached_price_cached_tokens_count_as_input() -> None:
    plain = Price(MINI.input, MINI.output, None, "t")
    assert request_cost(plain, input_tokens=1_000, output_tokens=0, cached_tokens=400) == (
        request_cost(plain, input_tokens=1_000, output_tokens=0))


def test_cache_writes_are_charged_at_their_own_rate_or_as_input_when_unknown() -> None:
    # claude-haiku-4-5 at batch rates: input $0.50, cache reads $0.05, writes $0.625 per M.
    haiku = Price(Decimal("0.5") / 10**6, Decimal("2.5") / 10**6, Decimal("0.05") / 10**6,
                  "t", cache_write=Decimal("0.625") / 10**6)
    cost = request_cost(haiku, input_tokens=10_000, output_tokens=100, cached_tokens=3_000,
                        cache_write_tokens=5_000)
    assert cost == (2_000 * Decimal("5e-7") + 3_000 * Decimal("5e-8")
                    + 5_000 * Decimal("6.25e-7") + 100 * Decimal("2.5e-6"))
    assert request_cost_pico(haiku, 10_000, 100, 3_000, 5_000) == to_pico(cost)
    unknown = Price(haiku.input, haiku.output, haiku.cached_input, "t")
    assert request_cost(unknown, input_tokens=10_000, output_tokens=100, cached_tokens=3_000,
                        cache_write_tokens=5_000) == request_cost(
        unknown, input_tokens=10_000, output_tokens=100, cached_tokens=3_000)
    # Counts beyond the input are clamped: a request never costs less than its plain input.
    assert request_cost_pico(haiku, 10, 0, 8, 8) == 8 * 50_000 + 2 * 625_000


def test_a_long_prompt_is_priced_at_its_tier_whole() -> None:
    high = Price(Decimal(2), Decimal(4), None, "t")
    tiered = Price(Decimal(1), Decimal(2), None, "t", tiers=((200_000, high),))
    assert request_cost(tiered, input_tokens=199_999, output_tokens=1) == Decimal(200_001)
    assert request_cost(tiered, input_tokens=200_000, output_tokens=1) == Decimal(400_004)


def test_integer_and_decimal_paths_agree_over_many_usages() -> None:
    odd = Price(Decimal("0.0000001234567891234"), Decimal("3e-7"), None, "t")
    assert odd.pico_rates is None  # not whole pico-dollars: the Decimal path is used
    for inp, out, cached in [(0, 0, 0), (1, 1, 0), (12_345, 678, 9_000), (7, 0, 99)]:
        assert request_cost_pico(MINI, inp, out, cached) == to_pico(
            request_cost(MINI, input_tokens=inp, output_tokens=out, cached_tokens=cached))
        assert request_cost_pico(odd, inp, out) == to_pico(
            request_cost(odd, input_tokens=inp, output_tokens=out))


def test_batch_fields_are_taken_as_they_are() -> None:
    override = parse_price_override({"input_cost_per_token_batches": 1.5e-07,
                                     "output_cost_per_token_batches": "6e-7"})
    assert override is not None
    assert (override.input, override.output) == (Decimal("1.5E-7"), Decimal("6E-7"))
    assert override.price("east").source == "config:east"


def test_synchronous_fields_get_the_batch_discount_and_the_cached_price_too() -> None:
    override = parse_price_override({"input_cost_per_token": 0.000002,
                                     "output_cost_per_token": 0.000008,
                                     "cache_read_input_token_cost": 0.0000005})
    assert override is not None
    assert override.input == Decimal("0.000001") and override.output == Decimal("0.000004")
    assert override.cached_input == Decimal("0.00000025")
    assert override.cache_write is None
    written = parse_price_override({"input_cost_per_token": 0.000002,
                                    "output_cost_per_token": 0.000008,
                                    "cache_creation_input_token_cost": 0.0000025})
    assert written is not None and written.cache_write == Decimal("0.00000125")
    assert written.price("east").cache_write == Decimal("0.00000125")


def test_the_first_section_wins_and_no_fields_means_no_override() -> None:
    assert parse_price_override({}, {"model": "x"}) is None
    override = parse_price_override({"input_cost_per_token_batches": 1,
                                     "output_cost_per_token_batches": 2},
                                    {"input_cost_per_token_batches": 9})
    assert override is not None and override.input == 1


@pytest.mark.parametrize("section", [
    {"input_cost_per_token_batches": 1e-7},
    {"input_cost_per_token": "cheap", "output_cost_per_token": 1},
    {"input_cost_per_token": -1, "output_cost_per_token": 1},
])
def test_bad_price_fields_are_refused(section: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_price_override(section)


def test_output_limit_comes_from_the_line_in_the_apis_order() -> None:
    line = b'{"body":{"max_tokens":50,"max_completion_tokens":20,"messages":[]}}'
    assert line_output_limit(line, 1024) == 20
    assert line_output_limit(b'{"body":{"max_output_tokens": 7}}', 1024) == 7
    text = b'{"body":{"messages":[{"content":"say \\"max_tokens\\": 99"}]}}'
    assert line_output_limit(text, 1024) == 1024
    assert default_output_tokens("/v1/embeddings") == 0
    assert default_output_tokens("/chat/completions") == 1024


def test_a_budget_refusal_names_the_amounts() -> None:
    assert budget_refusal(budget=Decimal(1), spent=Decimal("0.5"), in_flight=Decimal("0.25"),
                          estimate=Decimal("0.25")) is None
    message = budget_refusal(budget=Decimal(1), spent=Decimal("0.5"),
                             in_flight=Decimal("0.25"), estimate=Decimal("0.3"))
    assert message is not None and "$0.300000" in message and "$1.00" in message


@pytest.mark.parametrize("pico", [0, 1, 10**12, 123_456_789, 5 * 10**11, 7 * 10**13 + 3, -42])
def test_pico_text_is_the_exact_decimal_amount(pico: int) -> None:
    from batchyard.domain.pricing import pico_text

    assert Decimal(pico_text(pico)) == from_pico(pico)
    assert "E" not in pico_text(pico)

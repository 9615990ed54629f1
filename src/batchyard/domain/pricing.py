"""Money maths for requests: exact Decimal prices per token, costs, estimates, budgets.

Amounts are ``Decimal`` US dollars while computed and integer pico-dollars (10^-12 USD) when
stored: integers sum exactly in every SQL engine (SQLite has no exact decimal type), and a
pico-dollar is finer than any per-token price a provider publishes (the cheapest cached
input tokens cost about 10^-8 USD), so a stored amount equals the computed one.

Token estimates for input come from the request text at about four characters per token
(:func:`batchyard.domain.inputs.estimate_tokens`, no tokenizer, nothing downloaded); output
is bounded by the request's ``max_completion_tokens`` / ``max_output_tokens`` /
``max_tokens``, else a per-model default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

CURRENCY = "USD"
_PICO = Decimal("1e-12")
#: What the providers charge for batch jobs compared with their synchronous price.
BATCH_DISCOUNT = Decimal("0.5")
#: Output tokens assumed for a request that sets no limit (a chat answer of a page or so).
DEFAULT_OUTPUT_TOKENS = 1_024
#: Request-body fields that bound the output, in the order the APIs honour them.
OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_output_tokens", "max_tokens")


@dataclass(frozen=True, slots=True)
class Price:
    """Batch prices per token of one model at one deployment.

    ``cached_input`` is ``None`` when the source does not know a cached-input price (cached
    tokens are then charged as ordinary input); ``cache_write`` likewise for prompt-cache
    writes (Anthropic charges them above the input price). ``source`` says where the numbers came
    from: ``genai-prices <version>`` or ``config:<deployment id>``. ``tiers`` are the
    prices of long prompts: ``(from input tokens, price)`` pairs, ascending.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    source: str
    currency: str = CURRENCY
    tiers: tuple[tuple[int, Price], ...] = ()
    cache_write: Decimal | None = None
    #: The rates (input, cached input, output, cache write) in integer pico-dollars when
    #: they are whole (they always are for published prices): ingest then prices a row with
    #: integer arithmetic only.
    pico_rates: tuple[int, int, int, int] | None = field(init=False, compare=False,
                                                         default=None)

    def __post_init__(self) -> None:
        cached = self.cached_input if self.cached_input is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        rates = [amount / _PICO for amount in (self.input, cached, self.output, write)]
        if all(rate == rate.to_integral_value() for rate in rates):
            object.__setattr__(self, "pico_rates", tuple(int(rate) for rate in rates))

    def for_input(self, input_tokens: int) -> Price:
        """The price that applies to a request with this many input tokens."""
        chosen = self
        for start, price in self.tiers:
            if input_tokens >= start:
                chosen = price
        return chosen


@dataclass(frozen=True, slots=True)
class Unpriced:
    """No price is known; ``reason`` says why (stored with the request, never guessed)."""

    reason: str


PriceLookup = Price | Unpriced


def _split_input(input_tokens: int, cached_tokens: int,
                 cache_write_tokens: int) -> tuple[int, int, int]:
    """(plain, cache-read, cache-write) parts of ``input_tokens``, which includes both."""
    cached = min(max(cached_tokens, 0), input_tokens)
    write = min(max(cache_write_tokens, 0), input_tokens - cached)
    return input_tokens - cached - write, cached, write


def request_cost(price: Price, *, input_tokens: int, output_tokens: int,
                 cached_tokens: int = 0, cache_write_tokens: int = 0) -> Decimal:
    """The exact cost of one request's usage (cache reads and writes are part of
    ``input_tokens``; each is charged as plain input when its price is unknown)."""
    price = price.for_input(input_tokens)
    plain, cached, write = _split_input(input_tokens, cached_tokens, cache_write_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    write_rate = price.cache_write if price.cache_write is not None else price.input
    return (plain * price.input + cached * cached_rate + write * write_rate
            + output_tokens * price.output)


def request_cost_pico(price: Price, input_tokens: int, output_tokens: int,
                      cached_tokens: int = 0, cache_write_tokens: int = 0) -> int:
    """:func:`request_cost` in integer pico-dollars (integer maths when the rates allow)."""
    price = price.for_input(input_tokens)
    rates = price.pico_rates
    if rates is None:
        return to_pico(request_cost(price, input_tokens=input_tokens,
                                    output_tokens=output_tokens, cached_tokens=cached_tokens,
                                    cache_write_tokens=cache_write_tokens))
    plain, cached, write = _split_input(input_tokens, cached_tokens, cache_write_tokens)
    return plain * rates[0] + cached * rates[1] + output_tokens * rates[2] + write * rates[3]


def to_pico(amount: Decimal) -> int:
    """An amount in integer pico-dollars (half-even below 10^-12, which no price reaches)."""
    return int((amount / _PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pico: int | None) -> Decimal:
    """Integer pico-dollars back to an exact Decimal amount."""
    return (Decimal(int(pico or 0)) * _PICO).normalize() if pico else Decimal(0)


def pico_text(pico: int | None) -> str:
    """Pico-dollars as an exact decimal string of dollars (``"0.000123"``), no Decimal maths."""
    if not pico:
        return "0"
    whole, frac = divmod(abs(pico), 10**12)
    digits = f"{frac:012d}".rstrip("0")
    sign = "-" if pico < 0 else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def request_costs_object(batch_id: str, rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """The JSON of each request's cost in a batch, from (custom_id, cost_pico, currency,
    price_source, unpriced_reason) rows."""
    return {"object": "list", "batch_id": batch_id, "data": [
        {"custom_id": cid, "cost": None if pico is None else f"{from_pico(pico):f}",
         "currency": currency, "price_source": source, "unpriced_reason": reason}
        for cid, pico, currency, source, reason in rows]}


def usd(amount: Decimal, places: int = 6) -> str:
    """An amount as a fixed-point string for people (``0.000123``); JSON keeps full digits."""
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


def output_limit(body: Mapping[str, Any], default: int = DEFAULT_OUTPUT_TOKENS) -> int:
    """The most output tokens a request may produce (``default`` when it sets no limit)."""
    for name in OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if type(value) is int and value > 0:
            return value
    return default


#: A limit field as it appears in a request line's JSON (inside a JSON string the quotes
#: are escaped, so message text never matches).
_LIMIT_RE = re.compile(rb'"(max_completion_tokens|max_output_tokens|max_tokens)"\s*:\s*(\d+)')
#: Endpoints whose answers have no output tokens.
NO_OUTPUT_ENDPOINTS = frozenset({"/v1/embeddings", "/v1/moderations"})


def default_output_tokens(endpoint: str | None) -> int:
    """Output tokens assumed for a request that sets no limit on ``endpoint``."""
    norm = "/v1" + endpoint.removeprefix("/v1") if endpoint else None
    return 0 if norm in NO_OUTPUT_ENDPOINTS else DEFAULT_OUTPUT_TOKENS


def line_output_limit(raw: bytes, default: int) -> int:
    """:func:`output_limit` read from a raw request line (no JSON parse: a regex in C)."""
    found = {name: int(value) for name, value in _LIMIT_RE.findall(raw)}
    for name in _LIMIT_NAMES:
        value = found.get(name)
        if value:
            return value
    return default


_LIMIT_NAMES = tuple(name.encode() for name in OUTPUT_LIMIT_FIELDS)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a set of requests is expected to cost before anything is sent."""

    requests: int
    input_tokens: int
    output_tokens: int
    cost: Decimal | None
    currency: str = CURRENCY
    source: str | None = None
    unpriced_reason: str | None = None


def estimate_cost(lookup: PriceLookup, *, requests: int, input_tokens: int,
                  output_tokens: int) -> Estimate:
    """Price estimated token totals (``cost`` is None when the model is unpriced)."""
    if isinstance(lookup, Unpriced):
        return Estimate(requests, input_tokens, output_tokens, None,
                        unpriced_reason=lookup.reason)
    cost = request_cost(lookup, input_tokens=input_tokens, output_tokens=output_tokens)
    return Estimate(requests, input_tokens, output_tokens, cost, lookup.currency,
                    lookup.source)


# -- per-deployment prices from config.yaml (LiteLLM's field names) ----------------------

#: Already batch prices.
_BATCH_FIELDS = ("input_cost_per_token_batches", "output_cost_per_token_batches")
#: Synchronous prices: the batch discount applies.
_SYNC_FIELDS = ("input_cost_per_token", "output_cost_per_token")
_CACHED_FIELD = "cache_read_input_token_cost"
_CACHE_WRITE_FIELD = "cache_creation_input_token_cost"
PRICE_FIELDS = (*_BATCH_FIELDS, *_SYNC_FIELDS, _CACHED_FIELD, _CACHE_WRITE_FIELD)


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """Prices written for one deployment in ``config.yaml``, already at batch rates."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None

    def price(self, deployment_id: str) -> Price:
        """As a :class:`Price` whose source names the deployment."""
        return Price(self.input, self.output, self.cached_input, f"config:{deployment_id}",
                     cache_write=self.cache_write)


def _decimal(value: Any, name: str) -> Decimal:
    try:
        # str() first: a YAML float such as 1.5e-07 becomes exactly 0.00000015.
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return amount


def parse_price_override(*sections: Mapping[str, Any]) -> PriceOverride | None:
    """Read LiteLLM's per-token price fields from the given mappings (first one wins).

    ``input_cost_per_token_batches`` / ``output_cost_per_token_batches`` are taken as they
    are; ``input_cost_per_token`` / ``output_cost_per_token`` (and the prompt-cache prices
    ``cache_read_input_token_cost`` / ``cache_creation_input_token_cost``) are synchronous
    prices and get the batch discount.
    Raises ValueError naming the field for a bad value or a half-given pair.
    """
    fields: dict[str, Decimal] = {}
    for section in reversed(sections):
        fields.update({name: _decimal(section[name], name) for name in PRICE_FIELDS
                       if section.get(name) is not None})
    if not fields:
        return None
    batch_in, batch_out = (fields.get(name) for name in _BATCH_FIELDS)
    sync_in, sync_out = (fields.get(name) for name in _SYNC_FIELDS)
    inp = batch_in if batch_in is not None else _discounted(sync_in)
    out = batch_out if batch_out is not None else _discounted(sync_out)
    if inp is None or out is None:
        raise ValueError("give both an input and an output price per token "
                         f"({' / '.join(_BATCH_FIELDS)} or {' / '.join(_SYNC_FIELDS)})")
    return PriceOverride(inp, out, _discounted(fields.get(_CACHED_FIELD)),
                         _discounted(fields.get(_CACHE_WRITE_FIELD)))


def _discounted(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else amount * BATCH_DISCOUNT


# -- budgets -------------------------------------------------------------------------------

def budget_refusal(*, budget: Decimal, spent: Decimal, in_flight: Decimal,
                   estimate: Decimal) -> str | None:
    """Why a new batch would break a budget (``None``: it fits)."""
    total = spent + in_flight + estimate
    if total <= budget:
        return None
    return (f"this batch is estimated at ${usd(estimate)}; with ${usd(spent)} spent and "
            f"${usd(in_flight)} estimated for batches still running, the key's budget of "
            f"${usd(budget, 2)} would be exceeded")


def batch_cap_reached(*, cap: Decimal, actual: Decimal, unsubmitted_estimate: Decimal) -> bool:
    """Whether spending what is not yet submitted could take a batch over its cap."""
    return actual + unsubmitted_estimate > cap

"""Batch prices per (deployment, model): ``config.yaml`` overrides first, then genai-prices.

The table is the one bundled with the pinned ``genai-prices`` package: its background
updater is never started, so nothing is fetched at run time and the same version prices
every row (recorded as ``genai-prices <version>`` in each result's ``price_source``).
Lookups are cached per (deployment, model, day): ingest prices 50,000 rows with a handful
of lookups.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from decimal import Decimal
from typing import Any

from batchyard.deployments import DeploymentRegistry
from batchyard.domain.pricing import BATCH_DISCOUNT, Price, PriceLookup, Unpriced

_MTOK = Decimal(1_000_000)
_BATCH_CONTEXT = {"processing": "batch"}
#: genai-prices provider ids for our deployment kinds (Azure sells OpenAI's models).
_PROVIDER_IDS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic"}


@functools.cache
def table_version() -> str:
    """The pinned price table's name and version, as recorded with each priced row."""
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


class PriceBook:
    """Resolves the batch price of a model served by a deployment (thread-safe, cached)."""

    def __init__(self, deployments: DeploymentRegistry) -> None:
        self._deployments = deployments
        self._cache: dict[tuple[str | None, str | None, str | None, dt.date], PriceLookup] = {}
        self._lock = threading.Lock()

    def warm(self, *, wait: bool = False) -> None:
        """Load the price table in a background thread (importing it takes about a second)."""
        thread = threading.Thread(target=_load_table, name="batchyard-prices", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def lookup(self, *, deployment_id: str | None, model: str | None,
               provider: str | None = None, at: float | None = None) -> PriceLookup:
        """The price for ``model`` at ``deployment_id`` (override) or in the table.

        ``provider`` names the table's provider when no deployment is known (an estimate
        before routing); ``at`` is the unix time whose prices apply (default: now).
        """
        day = (dt.datetime.fromtimestamp(at, dt.UTC) if at is not None
               else dt.datetime.now(dt.UTC)).date()
        key = (deployment_id, model, provider, day)
        with self._lock:
            found = self._cache.get(key)
        if found is None:
            found = self._resolve(deployment_id, model, provider, day)
            with self._lock:
                self._cache[key] = found
        return found

    def _resolve(self, deployment_id: str | None, model: str | None, provider: str | None,
                 day: dt.date) -> PriceLookup:
        if deployment_id is not None:
            try:
                dep = self._deployments.get(deployment_id)
            except KeyError:
                dep = None
            if dep is not None:
                override = getattr(dep, "prices", None)
                if override is not None:
                    return override.price(dep.id)
                provider = dep.provider
                model = model or dep.model or None
        if not model:
            return Unpriced("the model is not known")
        return table_price(model, _PROVIDER_IDS.get(provider or "openai", provider), day)


def _load_table() -> None:
    from genai_prices import data_snapshot

    data_snapshot.get_snapshot()


def table_price(model: str, provider_id: str | None, day: dt.date) -> PriceLookup:
    """The batch price of ``model`` in the bundled genai-prices table on ``day``."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    try:
        found_provider, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        return Unpriced(f"model {model!r} is not in the price table ({table_version()}); "
                        "set input_cost_per_token_batches / output_cost_per_token_batches "
                        "for its deployment in config.yaml")
    when = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    standard = info.get_prices(when)
    batch = info.get_prices(when, _BATCH_CONTEXT)
    source = table_version()
    discount = _rates(batch) == _rates(standard)
    if discount:
        # No batch variant in the table: the providers' standard batch discount applies.
        source += f" (standard price x {BATCH_DISCOUNT})"
    return _price_of(batch, discount=discount, source=source,
                     label=f"{found_provider.id}/{info.id}")


def _rates(price: Any) -> tuple[Any, Any, Any, Any]:
    return (getattr(price, "input_mtok", None), getattr(price, "output_mtok", None),
            getattr(price, "cache_read_mtok", None), getattr(price, "cache_write_mtok", None))


def _price_of(mprice: Any, *, discount: bool, source: str, label: str) -> PriceLookup:
    inp, out, cached, write = _rates(mprice)
    if inp is None:
        return Unpriced(f"{label} has no per-token input price in {table_version()}")
    if out is None:
        out = Decimal(0)  # embeddings and moderations: only input is charged
    factor = BATCH_DISCOUNT if discount else Decimal(1)
    tiers = getattr(inp, "tiers", None)
    # Long-prompt tiers (e.g. from 200,000 input tokens): the whole request is priced at
    # the tier its input reaches.
    above = tuple((tier.start, _tier_price((inp, out, cached, write), factor, tier.start,
                                           source))
                  for tier in tiers or ())
    base = _tier_price((inp, out, cached, write), factor, 0, source)
    return Price(base.input, base.output, base.cached_input, source, tiers=above,
                 cache_write=base.cache_write)


def _tier_price(rates: tuple[Any, Any, Any, Any], factor: Decimal, start: int,
                source: str) -> Price:
    inp, out, cached, write = rates
    return Price(_per_token(inp, factor, start), _per_token(out, factor, start),
                 _per_token(cached, factor, start) if cached is not None else None, source,
                 cache_write=_per_token(write, factor, start) if write is not None else None)


def _per_token(mtok: Any, factor: Decimal, start: int) -> Decimal:
    if hasattr(mtok, "tiers"):
        amount = mtok.base
        for tier in mtok.tiers:
            if start >= tier.start:
                amount = tier.price
    else:
        amount = mtok
    return Decimal(amount) * factor / _MTOK

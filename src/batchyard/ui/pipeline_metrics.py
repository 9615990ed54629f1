"""``GET /metrics``: this host's process counters plus pipeline state read from the database.

The state gauges are computed at scrape time from a few aggregate queries
(:func:`batchyard.db.dashboard.pipeline_state`), so every API process answers the same
numbers and nothing has to be kept in sync in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from batchyard.db import dashboard
from batchyard.domain.lifecycle import BatchStatus
from batchyard.metrics.exposition import render

BATCH_STATUSES = tuple(s.value for s in BatchStatus)


class PipelineCollector(Collector):
    """Turns one :class:`~batchyard.db.dashboard.PipelineState` read into gauges."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        with dashboard.connect(self._engine) as conn:
            state = dashboard.pipeline_state(conn)
        now = time.time()
        yield from _batch_and_part_gauges(state)
        yield from _request_gauges(state)
        yield _gauge("batchyard_oldest_inflight_batch_age_seconds",
                     "Age of the oldest batch not yet in a final status (0: none).",
                     _age(now, state.oldest_batch_created))
        yield _gauge("batchyard_oldest_inflight_part_age_seconds",
                     "Age of the oldest provider batch (part) still being worked on (0: none).",
                     _age(now, state.oldest_part_created))
        if state.spend is not None:
            yield _gauge("batchyard_cost_usd",
                         "Cost of every priced result so far, summed over batches (USD).",
                         state.spend)
        yield _gauge("batchyard_state_query_seconds",
                     "Time spent reading the pipeline state for this scrape.",
                     time.perf_counter() - started)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _age(now: float, created: float | None) -> float:
    return max(0.0, now - created) if created is not None else 0.0


def _batch_and_part_gauges(state: dashboard.PipelineState) -> Iterator[Metric]:
    batches = GaugeMetricFamily("batchyard_batches", "Batches by public status.",
                                labels=["status"])
    for value in BATCH_STATUSES:  # every status, so an alert on a zero series evaluates
        batches.add_metric([value], state.batches.get(value, 0))
    yield batches
    parts = GaugeMetricFamily("batchyard_parts", "Live parts (provider batches in work) by "
                              "status and deployment.", labels=["status", "deployment"])
    for (part_status, dep), count in sorted(state.parts.items()):
        parts.add_metric([part_status, dep], count)
    yield parts


def _request_gauges(state: dashboard.PipelineState) -> Iterator[Metric]:
    requests = GaugeMetricFamily(
        "batchyard_requests", "Requests of finalized batches that succeeded or failed, and "
        "requests of batches still open (pending).", labels=["state"])
    for name in ("pending", "succeeded", "failed"):
        requests.add_metric([name], state.requests.get(name, 0))
    yield requests
    total = GaugeMetricFamily("batchyard_inflight_requests",
                              "Requests in live parts, per deployment.", labels=["deployment"])
    done = GaugeMetricFamily("batchyard_inflight_requests_done",
                             "Requests of live parts the provider reports done, per deployment.",
                             labels=["deployment"])
    for dep, (n_done, n_total) in sorted(state.progress.items()):
        total.add_metric([dep], n_total)
        done.add_metric([dep], n_done)
    yield total
    yield done


def scrape(engine: Engine) -> bytes:
    """The whole exposition: process metrics, then the pipeline state gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(engine))
    return render() + generate_latest(registry)


def build_metrics_router() -> APIRouter:
    """``GET /metrics`` in the Prometheus text format."""
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(scrape, request.app.state.services.engine)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router

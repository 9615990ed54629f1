"""Rendering this host's process metrics, and a worker's own metrics port."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from batchyard.metrics import multiproc

logger = logging.getLogger(__name__)


def process_registry() -> CollectorRegistry:
    """The registry to expose: every process's files in multiprocess mode, else this one's."""
    if not multiproc.enabled():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def render() -> bytes:
    """The text exposition of the process metrics (merged across processes when shared)."""
    return generate_latest(process_registry())


def serve_worker_metrics(port: int, addr: str) -> None:
    """Expose this worker's metrics on ``addr:port`` (a daemon thread) for Prometheus."""
    start_http_server(port, addr=addr, registry=process_registry())
    logger.info("metrics.listening", extra={"addr": addr, "port": port})

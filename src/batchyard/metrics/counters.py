"""The counters and histograms of one process (API, worker), in the default registry.

Prometheus metrics are process-wide by design (one registry per process, merged across
processes by multiprocess mode), so these are the one deliberate set of module globals.
Label values are bounded: route templates, operation names, deployment ids from config,
outcome classes, task names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

#: Latency buckets (seconds) from a fast cached read to a long upload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)

API_REQUESTS = Counter(
    "batchyard_api_requests", "HTTP requests answered by the API.",
    ["method", "route", "status"])
API_LATENCY = Histogram(
    "batchyard_api_request_duration_seconds", "Time to answer an API request.",
    ["method", "route"], buckets=LATENCY_BUCKETS)

PROVIDER_CALLS = Counter(
    "batchyard_provider_calls", "HTTP calls to a provider, by outcome of each attempt.",
    ["operation", "deployment", "outcome"])
PROVIDER_LATENCY = Histogram(
    "batchyard_provider_call_duration_seconds", "Time of one provider HTTP attempt.",
    ["operation"], buckets=LATENCY_BUCKETS)
PROVIDER_RETRIES = Counter(
    "batchyard_provider_retries", "Provider calls sent again after a retryable failure.",
    ["reason"])
PROVIDER_UPLOAD_BYTES = Counter(
    "batchyard_provider_upload_bytes", "Request bytes sent to providers.", ["deployment"])
PROVIDER_DOWNLOAD_BYTES = Counter(
    "batchyard_provider_download_bytes", "Response bytes read from providers.", ["deployment"])
TOKEN_LIMIT_EXCEEDED = Counter(
    "batchyard_token_limit_exceeded",
    "Provider batches failed for enqueued-token quota (their requests were requeued).",
    ["deployment"])

ROWS_INGESTED = Counter(
    "batchyard_rows_ingested", "Result rows written from provider output and error files.",
    ["outcome"])
TASKS = Counter("batchyard_tasks", "Pipeline tasks run by workers.", ["task", "outcome"])
TASK_DURATION = Histogram(
    "batchyard_task_duration_seconds", "Time a worker spent on one pipeline task.",
    ["task"], buckets=TASK_BUCKETS)


def retry_reason(status: int | None) -> str:
    """A bounded label for why a call was retried: 429, 5xx, 4xx or connection."""
    if status is None:
        return "connection"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"


def count_row_outcomes(ok: int, failed: int) -> None:
    """Add ingested result rows: ``ok`` successes and ``failed`` request errors."""
    if ok:
        ROWS_INGESTED.labels(outcome="ok").inc(ok)
    if failed:
        ROWS_INGESTED.labels(outcome="error").inc(failed)


@contextmanager
def timed_task(task: str) -> Iterator[None]:
    """Count one pipeline task and observe its duration, whether it returns or raises."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        TASK_DURATION.labels(task=task).observe(time.perf_counter() - started)
        TASKS.labels(task=task, outcome=outcome).inc()

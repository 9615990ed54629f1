"""Process-level Prometheus metrics: counters and histograms incremented where things happen.

This package sits below every other layer (the provider adapters, services, API and worker
all import it) and depends on nothing of ours: it only knows ``prometheus_client`` and
``httpx``. State read from the database at scrape time lives with the dashboard
(:mod:`batchyard.ui.pipeline_metrics`), not here.

Several processes on one host (``serve --workers N``, ``up``) share one directory named by
``PROMETHEUS_MULTIPROC_DIR``; :mod:`batchyard.metrics.multiproc` prepares it before
``prometheus_client`` is first imported, and :func:`~batchyard.metrics.exposition.render`
merges every process's files at scrape time.
"""

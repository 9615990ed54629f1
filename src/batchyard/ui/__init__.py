"""The web dashboard (``/ui``) and the Prometheus endpoint (``/metrics``) of the API."""

"""Prometheus metrics and the /health endpoint (``server``)."""

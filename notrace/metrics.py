"""Prometheus metrics, in a registry of the app's own (no process-global state).

Runs in the server loop. Label values come from closed sets only (operation names from
the declarations, route names, status codes, Result statuses), so a client cannot grow
the number of series.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily

from sandbox import STATUSES

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZE_BUCKETS = tuple(float(1 << n) for n in range(10, 31, 2))  # 1 KiB .. 1 GiB


class _SandboxRestarts:
    """notrace_sandbox_restarts_total, read from Sandbox.restarts at scrape time (0 until
    a sandbox is watched): a counter the sandbox keeps, so nothing to keep in sync."""

    def __init__(self) -> None:
        self.sandbox = None

    def collect(self):
        yield CounterMetricFamily(
            "notrace_sandbox_restarts", "Fork server restarts after it died.",
            value=self.sandbox.restarts if self.sandbox is not None else 0)


class Metrics:
    """Every metric the service exports, and the registry that holds them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "notrace_requests", "HTTP requests answered, by route or operation and status.",
            ["operation", "status"], registry=r)
        self.duration = Histogram(
            "notrace_request_duration_seconds", "Time from request start to answer.",
            ["operation"], buckets=_DURATION_BUCKETS, registry=r)
        self.job_duration = Histogram(
            "notrace_job_duration_seconds", "Wall time of the child that ran a job.",
            ["operation"], buckets=_DURATION_BUCKETS, registry=r)
        self.upload_bytes = Histogram(
            "notrace_upload_bytes", "Request body sizes of operation requests.",
            ["operation"], buckets=_SIZE_BUCKETS, registry=r)
        self.children_ended = Counter(
            "notrace_children_ended", "Jobs ended, by cause (the sandbox Result status).",
            ["cause"], registry=r)
        for cause in STATUSES:   # every cause is exported from the start, at zero
            self.children_ended.labels(cause)
        self.queue_depth = Gauge("notrace_queue_depth", "Jobs waiting for a free child.",
                                 registry=r)
        self.in_flight = Gauge("notrace_jobs_in_flight", "Jobs running in a child.",
                               registry=r)
        self.ready = Gauge("notrace_ready", "1 when the sandbox has warm children.",
                           registry=r)
        self.restarts = _SandboxRestarts()
        r.register(self.restarts)

    def watch(self, sandbox) -> None:
        """Read the sandbox's gauges at scrape time (nothing to keep in sync)."""
        self.queue_depth.set_function(lambda: sandbox.queue_depth)
        self.in_flight.set_function(lambda: sandbox.in_flight)
        self.ready.set_function(lambda: 1.0 if sandbox.ready else 0.0)
        self.restarts.sandbox = sandbox

    def render(self) -> bytes:
        return generate_latest(self.registry)

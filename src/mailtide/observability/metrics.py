"""Prometheus metrics: instruments updated as work happens, in a registry of this process.

Quantities the database knows (jobs by state, per-account progress, lag) are not instrumented:
/metrics reads them at scrape time (see api/routes/metrics.py), so they are right whichever process
did the work. So are the Gmail clients' own counters (calls by method, quota units, waits).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    """The instruments of one process (one registry each, so tests and runtimes do not share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.job_duration = Histogram(
            "mailtide_job_duration_seconds",
            "Time a job handler ran, by job type and outcome (completed, retry, failed, error, canceled).",
            ["type", "outcome"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.gmail_http_requests = Counter(
            "mailtide_gmail_http_requests",
            "HTTP requests sent to Gmail and its token endpoint (a batch is one), by method and status "
            "(0 = no answer).",
            ["method", "status"],
            registry=self.registry,
        )
        self.gmail_request_duration = Histogram(
            "mailtide_gmail_request_duration_seconds",
            "Latency of HTTP requests to Gmail, by method.",
            ["method"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "mailtide_api_requests",
            "Requests to mailtide's HTTP API, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )

    def record_gmail_request(self, method: str, status: int, seconds: float) -> None:
        self.gmail_http_requests.labels(method, str(status)).inc()
        self.gmail_request_duration.labels(method).observe(seconds)

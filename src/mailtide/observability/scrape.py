"""What /metrics reads at scrape time: the database overview and the Gmail clients' own counters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailtide.gmail import GmailClient
from mailtide.observability.metrics import ServiceMetrics
from mailtide.overview import Overview


class OverviewCollector(Collector):
    """Gauges from one overview snapshot (taken at scrape time)."""

    def __init__(self, overview: Overview) -> None:
        self.overview = overview

    def collect(self) -> Iterator[Metric]:
        q = self.overview.queue
        jobs = GaugeMetricFamily("mailtide_jobs", "Jobs in the queue, by state and type.", labels=["state", "type"])
        for state, by_type in sorted(q.counts.items()):
            for job_type, n in sorted(by_type.items()):
                jobs.add_metric([state, job_type], n)
        yield jobs
        yield GaugeMetricFamily("mailtide_jobs_paused", "Queued jobs parked until their account is re-authorised.",
                                value=q.paused)
        yield GaugeMetricFamily("mailtide_jobs_scheduled", "Queued jobs not due yet (backoff, schedules).",
                                value=q.scheduled)
        yield GaugeMetricFamily("mailtide_queue_oldest_queued_age_seconds",
                                "How long the longest-waiting due job has waited (0 when none).",
                                value=q.oldest_queued_age_seconds or 0.0)
        info = GaugeMetricFamily("mailtide_account_info", "One per account; the status label says its state.",
                                 labels=["account", "email", "status"])
        mirrored = GaugeMetricFamily("mailtide_account_messages_mirrored", "Messages in the mirror.",
                                     labels=["account"])
        total = GaugeMetricFamily("mailtide_account_messages_total",
                                  "Gmail's message count at the last backfill start.", labels=["account"])
        progress = GaugeMetricFamily("mailtide_account_backfill_progress_ratio",
                                     "Messages mirrored / Gmail's count (0..1).", labels=["account"])
        eta = GaugeMetricFamily("mailtide_account_backfill_eta_seconds",
                                "Backfill time left at the quota-bound rate (running backfills only).",
                                labels=["account"])
        lag = GaugeMetricFamily("mailtide_account_sync_lag_seconds",
                                "How long the oldest pending real-time work of the account has waited.",
                                labels=["account"])
        last_sync = GaugeMetricFamily("mailtide_account_last_sync_timestamp_seconds",
                                      "When the account last caught up with Gmail (Unix time).", labels=["account"])
        watch = GaugeMetricFamily("mailtide_account_watch_expiration_timestamp_seconds",
                                  "When the Gmail watch of the account expires (Unix time).", labels=["account"])
        paused = GaugeMetricFamily("mailtide_account_jobs_paused", "Jobs parked for the account.", labels=["account"])
        for a in self.overview.accounts:
            key = [str(a.id)]
            info.add_metric([str(a.id), a.email, a.status], 1)
            mirrored.add_metric(key, a.messages_mirrored)
            paused.add_metric(key, a.paused_jobs)
            lag.add_metric(key, a.lag_seconds)
            if a.messages_total is not None:
                total.add_metric(key, a.messages_total)
            if a.backfill.ratio is not None:
                progress.add_metric(key, a.backfill.ratio)
            if a.backfill.eta_seconds is not None:
                eta.add_metric(key, a.backfill.eta_seconds)
            if a.last_sync_at is not None:
                last_sync.add_metric(key, a.last_sync_at)
            if a.watch_expiration is not None:
                watch.add_metric(key, a.watch_expiration)
        yield from (info, mirrored, total, progress, eta, lag, last_sync, watch, paused)
        yield GaugeMetricFamily("mailtide_messages_mirrored", "Messages in the mirror, all accounts.",
                                value=sum(a.messages_mirrored for a in self.overview.accounts))


class GmailUsageCollector(Collector):
    """Calls by method and status (each call inside a batch counts), quota units and waits, per account."""

    def __init__(self, clients: Mapping[int, GmailClient]) -> None:
        self.clients = clients

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mailtide_gmail_requests",
            "Gmail API calls by account, method and status (calls inside a batch count one by one; 0 = no answer).",
            labels=["account", "method", "status"],
        )
        units = CounterMetricFamily("mailtide_gmail_quota_units", "Gmail quota units spent, by account.",
                                    labels=["account"])
        waited = CounterMetricFamily("mailtide_gmail_quota_wait_seconds",
                                     "Time spent waiting for Gmail quota (pacing and rate-limit pauses), by account.",
                                     labels=["account"])
        limited = CounterMetricFamily("mailtide_gmail_rate_limited", "Rate-limit replies from Gmail, by account.",
                                      labels=["account"])
        for account_id, client in sorted(self.clients.items()):
            key = str(account_id)
            for (method, status), count in sorted(client.request_counts.items()):
                requests.add_metric([key, method, str(status)], count)
            stats = getattr(getattr(client, "limiter", None), "stats", None)
            if stats is not None:
                units.add_metric([key], stats.units)
                waited.add_metric([key], stats.waited_seconds)
                limited.add_metric([key], stats.rate_limited)
        yield from (requests, units, waited, limited)


def render_metrics(metrics: ServiceMetrics, overview: Overview, clients: Mapping[int, GmailClient]) -> bytes:
    """The Prometheus text of this process's instruments plus the scrape-time snapshot."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(OverviewCollector(overview))
    snapshot.register(GmailUsageCollector(clients))
    return generate_latest(metrics.registry) + generate_latest(snapshot)

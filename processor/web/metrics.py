"""/metrics: Prometheus text, read from the store at scrape time (any daemon of a shared store tells the same)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from processor.context import Context
from processor.web.queries import metrics_snapshot


class _StoreCollector:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self):
        snap = metrics_snapshot(self.ctx)
        runs = GaugeMetricFamily("rosterdrop_runs", "Runs in the store, by tenant and status",
                                 labels=["tenant", "status"])
        for tenant, status, n in snap["runs"]:
            runs.add_metric([tenant, status], n)
        yield runs
        yield GaugeMetricFamily("rosterdrop_queue_depth", "Drops received and not yet finished",
                                value=snap["queue"])
        yield GaugeMetricFamily("rosterdrop_outbox_waiting", "Emails queued or being sent", value=snap["outbox"])
        since = GaugeMetricFamily("rosterdrop_seconds_since_last_applied",
                                  "Seconds since the tenant's last applied drop was received", labels=["tenant"])
        for tenant, seconds in sorted(snap["since_applied"].items()):
            since.add_metric([tenant], round(seconds, 3))
        yield since


def render_metrics(ctx: Context) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(ctx))
    return generate_latest(registry), CONTENT_TYPE_LATEST

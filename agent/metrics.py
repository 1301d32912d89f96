"""Prometheus exposition of the agent's state (/metrics, through prometheus_client).

The per-device families (online count, |drift| p50/p99, lost batches, alerts: several
lines per device) come from the API's device summary, which is refreshed once a second;
they are rendered once per summary and reused by every scrape until the next one
(rendering them was ~3 ms of CPU per scrape with 100 devices). The counters that move
between summaries (collectors, rate limits, requests, WebSockets) are rendered on each
scrape, after them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gridcast.agent import rate_limit

if TYPE_CHECKING:
    from gridcast.agent.api import Api


class _DeviceMetrics:
    """The families computed from one device summary (the API's rows, by device id)."""

    def __init__(self, summary: dict[str, dict]) -> None:
        self.summary = summary

    def collect(self):
        devices = list(self.summary.values())
        online = GaugeMetricFamily("gridcast_devices_online", "Devices whose status is online")
        online.add_metric([], sum(1 for d in devices if d["online"]))
        yield online
        p99 = GaugeMetricFamily("gridcast_device_drift_p99_ms",
                                "p99 of |drift| over the last 60 s, per device", labels=["device"])
        p50 = GaugeMetricFamily("gridcast_device_drift_p50_ms",
                                "p50 of |drift| over the last 60 s, per device", labels=["device"])
        lost = CounterMetricFamily("gridcast_telemetry_lost_batches",
                                   "Telemetry batches never received (sequence gaps)",
                                   labels=["device"])
        alert = GaugeMetricFamily("gridcast_drift_alert", "1 while a drift alert is firing",
                                  labels=["device"])
        for d in devices:
            if d["drift_p99_ms"] is not None:
                p99.add_metric([d["id"]], d["drift_p99_ms"])
                p50.add_metric([d["id"]], d["drift_p50_ms"])
            lost.add_metric([d["id"]], d["lost"])
            alert.add_metric([d["id"]], 1.0 if d["alert"] else 0.0)
        yield from (p99, p50, lost, alert)


class _AgentMetrics:
    """The families read live on each scrape."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def collect(self):
        api = self.api
        names = ("received", "stored_batches", "stored_samples", "malformed", "write_errors")
        for name in names:
            family = CounterMetricFamily(f"gridcast_collector_{name}",
                                         f"Collector counter: {name.replace('_', ' ')}",
                                         labels=["collector"])
            for i, c in enumerate(api.core.collectors):
                family.add_metric([str(i)], getattr(c.stats, name))
            yield family
        yield from rate_limit.metric_families(api.core.ingest, api.rate_limit)
        requests = CounterMetricFamily("gridcast_api_requests", "HTTP requests served")
        requests.add_metric([], api.requests)
        yield requests
        sockets = GaugeMetricFamily("gridcast_api_websockets", "Open WebSocket clients")
        sockets.add_metric([], len(api.sockets))
        yield sockets


def _render(collector: _DeviceMetrics | _AgentMetrics) -> bytes:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry)


class Exposition:
    """The /metrics body of one API. Called on the event loop thread, as the summary is
    replaced there (a new dict each refresh: its identity says when to render again)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._summary: dict[str, dict] | None = None
        self._devices_text = b""

    def render(self) -> tuple[bytes, str]:
        summary = self.api.summary
        if summary is not self._summary:
            self._devices_text = _render(_DeviceMetrics(summary))
            self._summary = summary
        return self._devices_text + _render(_AgentMetrics(self.api)), CONTENT_TYPE_LATEST

"""Prometheus exposition of the agent's state (prometheus_client, one registry per call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gridcast.agent import rate_limit

if TYPE_CHECKING:
    from gridcast.agent.api import Api


class _AgentMetrics:
    def __init__(self, api: Api) -> None:
        self.api = api

    def collect(self):
        api = self.api
        devices = list(api.summary.values())
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


def exposition(api: Api) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(_AgentMetrics(api))
    return generate_latest(registry), CONTENT_TYPE_LATEST

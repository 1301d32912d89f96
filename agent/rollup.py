"""From stored telemetry to a service level: 1 s and 1 min drift aggregates, gaps, alerts.

It works on the stored union of all collectors' writes, so it is correct with
any number of collectors, and every step is idempotent (aggregates replace
their bucket, gaps are keyed by where they start): running it twice, or in two
places, stores the same thing. Buckets are by the agent's receive time; a
second is aggregated once it is SETTLE_S old, so that batches still in flight
between collectors land first.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from dataclasses import dataclass, field

from gridcast.agent import drift_stats
from gridcast.agent.clock import now_us
from gridcast.agent.store import DriftAggregate, Store, StoreError

log = logging.getLogger("gridcast.rollup")

SETTLE_S = 2


def summarize(device_id: str, bucket_s: int, drift_us: list[int]) -> DriftAggregate:
    p50, p99, top = drift_stats.percentiles_us(drift_us, (50, 99, 100))
    return DriftAggregate(device_id, bucket_s, len(drift_us), p50, p99, top)


@dataclass
class AlertPolicy:
    """Alert when a device's |drift| p99 over the last `window_s` seconds passes a threshold."""

    threshold_ms: float = 1.0
    window_s: int = 10
    webhook_url: str | None = None
    active: dict[str, bool] = field(default_factory=dict)
    sent: list[dict] = field(default_factory=list)

    def check(self, device_id: str, p99_ms: float, at_s: int) -> None:
        over = p99_ms > self.threshold_ms
        if over == self.active.get(device_id, False):
            return
        self.active[device_id] = over
        event = {"device_id": device_id, "state": "firing" if over else "resolved",
                 "drift_p99_ms": round(p99_ms, 3), "threshold_ms": self.threshold_ms,
                 "at_s": at_s}
        self.sent.append(event)
        (log.warning if over else log.info)(
            "drift alert %s: %s p99 %.3f ms (threshold %.3f ms)", event["state"], device_id,
            p99_ms, self.threshold_ms)
        if self.webhook_url:
            threading.Thread(target=self._post, args=(event,), daemon=True).start()

    def _post(self, event: dict) -> None:
        assert self.webhook_url is not None
        req = urllib.request.Request(self.webhook_url, data=json.dumps(event).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5):
                pass
        except OSError as exc:
            log.error("alert webhook %s failed: %s", self.webhook_url, exc)


class Rollup:
    def __init__(self, store: Store, alerts: AlertPolicy | None = None,
                 raw_retention_s: int = 7 * 86400, second_retention_s: int = 2 * 86400,
                 start_s: int | None = None) -> None:
        self.store, self.alerts = store, alerts
        self.raw_retention_s, self.second_retention_s = raw_retention_s, second_retention_s
        now_s = now_us() // 1_000_000
        self.next_second = start_s if start_s is not None else now_s - SETTLE_S - 60
        self.next_minute = (self.next_second // 60) * 60
        self.checked: dict[tuple[str, int], int] = {}  # (device, boot) -> last seq checked
        self.last_prune_s = 0
        self.window: dict[str, list[tuple[int, list[int]]]] = {}  # recent seconds per device

    def run_once(self, at_us: int | None = None) -> None:
        now_s = (at_us if at_us is not None else now_us()) // 1_000_000
        try:
            self._seconds(now_s)
            self._minutes(now_s)
            self._gaps(now_s)
            if now_s - self.last_prune_s >= 60:
                self.store.prune((now_s - self.raw_retention_s) * 1_000_000,
                                 now_s - self.second_retention_s)
                self.last_prune_s = now_s
        except StoreError as exc:
            log.error("rollup: %s (will retry)", exc)

    def flush(self) -> None:
        """Aggregate everything stored so far (at shutdown: no more batches are coming)."""
        self.run_once(now_us() + (SETTLE_S + 61) * 1_000_000)

    def _skip_empty(self, start_s: int, limit_s: int) -> int:
        """The first second at or after start_s with stored batches (limit_s + 1 if none):
        a rollup that starts long after its data, or sees a quiet hour, does not walk it."""
        first = self.store.first_received_since(start_s * 1_000_000)
        if first is None or first // 1_000_000 > limit_s:
            return limit_s + 1
        return max(start_s, first // 1_000_000)

    def _seconds(self, now_s: int) -> None:
        limit = now_s - SETTLE_S
        while self.next_second <= limit:
            self.next_second = self._skip_empty(self.next_second, limit)
            if self.next_second > limit:
                break
            s = self.next_second
            per_device = self.store.samples_between(s * 1_000_000, (s + 1) * 1_000_000)
            aggs = [summarize(d, s, v) for d, v in per_device.items() if v]
            if aggs:
                self.store.add_telemetry([], aggregates_1s=aggs)
            for d, v in per_device.items():
                recent = self.window.setdefault(d, [])
                recent.append((s, v))
            self._alerts(s)
            self.next_second += 1

    def _alerts(self, s: int) -> None:
        if self.alerts is None:
            return
        for d, recent in self.window.items():
            recent[:] = [(t, v) for t, v in recent if t > s - self.alerts.window_s]
            values = [x for _, v in recent for x in v]
            p99 = drift_stats.percentile_ms(values, 99)
            if p99 is not None:
                self.alerts.check(d, p99, s)

    def _minutes(self, now_s: int) -> None:
        while self.next_minute + 60 <= now_s - SETTLE_S:
            first = self._skip_empty(self.next_minute, now_s - SETTLE_S - 60)
            self.next_minute = max(self.next_minute, first // 60 * 60)
            if self.next_minute + 60 > now_s - SETTLE_S:
                break
            m = self.next_minute
            per_device = self.store.samples_between(m * 1_000_000, (m + 60) * 1_000_000)
            aggs = [summarize(d, m, v) for d, v in per_device.items() if v]
            if aggs:
                self.store.add_telemetry([], aggregates_1m=aggs)
            self.next_minute += 60

    def _gaps(self, now_s: int) -> None:
        """A missing seq with a later one stored is lost (the device resends unacked
        batches after a reconnect, so it is not coming)."""
        found = []
        for device_id, boot in self.store.boots((now_s - 3600) * 1_000_000):
            last = self.checked.get((device_id, boot))
            seqs = self.store.seqs_since(device_id, boot, -1 if last is None else last)
            if not seqs:
                continue
            # A (device, boot) first seen: what came before the agent watched is unknown.
            expected = seqs[0] if last is None else last + 1
            for seq in seqs:
                if seq > expected:
                    found.append((device_id, boot, expected, seq - expected, now_s * 1_000_000))
                expected = seq + 1
            self.checked[(device_id, boot)] = seqs[-1]
        if found:
            # One line per device and pass: a device throttled by the ingest rate limit
            # leaves a gap after nearly every batch it is allowed.
            per_device: dict[str, list[tuple[int, int]]] = {}
            for device_id, _, first, count, _ in found:
                per_device.setdefault(device_id, []).append((first, count))
            for device_id, gaps in per_device.items():
                log.warning("telemetry gap: %s lost %d batch(es) from seq %d%s", device_id,
                            sum(c for _, c in gaps), gaps[0][0],
                            f" ({len(gaps)} gaps)" if len(gaps) > 1 else "")
            self.store.add_telemetry([], gaps=found)

"""Staged rollouts: canaries first, then everyone, stopped by drift.

1. Deploy to the first ``canary`` devices. All must activate the bundle.
2. Soak for ``soak_s`` seconds: the canaries' |drift| p99 over what they report
   in that time must stay at or under ``max_drift_ms``, and they must stay
   online.
3. Only then deploy to the rest.

A canary that fails to activate, goes offline, or drifts past the threshold
stops the rollout: every canary that did activate is rolled back (the device
returns to its previous bundle, which its store keeps) and no other device is
touched. With no drift reports during the soak (devices not playing) the
rollout continues and says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from gridcast.agent import deploy, drift_stats
from gridcast.agent.clock import now_us
from gridcast.agent.store import Store
from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics

log = logging.getLogger("gridcast.rollout")


@dataclass
class RolloutPlan:
    device_ids: list[str]
    canary: int = 1
    max_drift_ms: float = 1.0
    soak_s: float = 30.0


@dataclass
class RolloutResult:
    state: str = "pending"  # pending, canary, soaking, rolling-out, done, stopped
    reason: str = ""
    canaries: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)
    soak_drift_p99_ms: dict[str, float | None] = field(default_factory=dict)
    soak_samples: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


async def _rollback(transport: Transport, device_ids: list[str], result: RolloutResult) -> None:
    payload = messages.encode("rollback")
    for device_id in device_ids:
        replies = transport.queue(device_id)
        while not replies.empty():
            replies.get_nowait()
        await transport.send(device_id, topics.CMD, payload)
        try:
            async with asyncio.timeout(5.0):
                while True:
                    item = await replies.get()
                    kind = messages.decode(item.payload).kind
                    if kind in ("activated", "rejected", "error"):
                        break
        except TimeoutError:
            result.failed.setdefault(device_id, "no answer to rollback")
            continue
        if kind == "activated":
            result.rolled_back.append(device_id)
        else:
            result.failed.setdefault(device_id, f"rollback refused ({kind})")


def soak_drift(store: Store, device_ids: list[str], since_us: int) -> dict[str, np.ndarray]:
    return {d: np.abs(np.asarray([v for _, v in store.drift_samples(d, since_us)], dtype=float))
            for d in device_ids}


async def rollout(transport: Transport, store: Store, bundle: bytes, track_id: str,
                  version: int, plan: RolloutPlan,
                  online: Callable[[str], bool] = lambda _d: True,
                  on_state: Callable[[RolloutResult], None] | None = None,
                  check_every_s: float = 1.0) -> RolloutResult:
    started = time.monotonic()
    result = RolloutResult()

    def state(name: str, reason: str = "") -> None:
        result.state, result.reason = name, reason or result.reason
        result.seconds = round(time.monotonic() - started, 3)
        log.info("rollout of %s v%d: %s %s", track_id, version, name, reason)
        if on_state:
            on_state(result)

    canaries = plan.device_ids[:max(0, plan.canary)]
    rest = plan.device_ids[len(canaries):]
    result.canaries = canaries
    if canaries:
        state("canary")
        outcome = await deploy.deploy(transport, canaries, bundle, track_id, version)
        result.activated += [r.id for r in outcome if r.ok]
        result.failed |= {r.id: r.error for r in outcome if not r.ok}
        if result.failed:
            await _rollback(transport, result.activated, result)
            state("stopped", f"canary failed to activate: {', '.join(result.failed)}")
            return result
        state("soaking", f"{plan.soak_s:g} s, |drift| p99 <= {plan.max_drift_ms:g} ms")
        since = now_us()
        deadline = time.monotonic() + plan.soak_s
        while True:
            drift = await asyncio.to_thread(soak_drift, store, canaries, since)
            result.soak_samples = int(sum(v.size for v in drift.values()))
            result.soak_drift_p99_ms = {
                d: drift_stats.percentile_ms(v, 99) for d, v in drift.items()}
            over = {d: p for d, p in result.soak_drift_p99_ms.items()
                    if p is not None and p > plan.max_drift_ms}
            gone = [d for d in canaries if not online(d)]
            if over or gone:
                await _rollback(transport, result.activated, result)
                why = (f"drift p99 over {plan.max_drift_ms:g} ms on "
                       + ", ".join(f"{d} ({p:.3f} ms)" for d, p in over.items())) if over else (
                    f"canary offline: {', '.join(gone)}")
                state("stopped", why)
                return result
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(check_every_s, max(0.0, deadline - time.monotonic())))
        if result.soak_samples == 0:
            log.warning("rollout of %s: no drift reports during the soak (devices not playing?); "
                        "continuing", track_id)
    if rest:
        state("rolling-out", f"{len(rest)} more devices")
        outcome = await deploy.deploy(transport, rest, bundle, track_id, version)
        result.activated += [r.id for r in outcome if r.ok]
        result.failed |= {r.id: r.error for r in outcome if not r.ok}
    state("done" if not result.failed else "done-with-failures",
          f"{len(result.activated)} of {len(plan.device_ids)} devices active")
    return result

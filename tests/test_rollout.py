"""Staged rollouts (the deployment service, agent/deployment.py) against devices made of the
real protocol Receiver.

The "devices" here are protocol.transfer.Receiver objects behind an in-process
transport: the transfer, activation and rollback logic is the real one (the
firmware wraps the same Receiver); only the network is left out. hil/ runs the
same rollouts against the firmware in MicroPython.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass

import pytest

from gridcast.agent.deployment import BundleRef, DeploymentService, TransportFleet
from gridcast.agent.store import SqliteStore, TelemetryBatch
from gridcast.agent.transport import Incoming, Transport
from gridcast.hil.bundles import make_bundle
from gridcast.protocol import keys, messages, topics, transfer

KEY = b"r" * 32


class LoopbackDevice:
    def __init__(self, key: bytes = KEY) -> None:
        self.store = transfer.MemoryStore()
        self.receiver = transfer.Receiver(self.store, {keys.key_id(key): key}, 2**31)
        self.heard: list[str] = []  # the kinds of the messages it was sent

    def handle(self, payload: bytes) -> bytes | None:
        msg = messages.decode(payload)
        self.heard.append(msg.kind)
        if msg.kind == "rollback":
            if self.store.previous_entry is None:
                return messages.encode("rejected", reason=4, detail="no previous bundle")
            self.store.active_entry, self.store.previous_entry = self.store.previous_entry, None
            t, v, sha = self.store.active()
            return messages.encode("activated", track_id=t, bundle_version=v, sha256=sha)
        reply = self.receiver.handle(msg)
        return None if reply is None else reply.payload


class LoopbackTransport(Transport):
    def __init__(self, devices: dict[str, LoopbackDevice]) -> None:
        super().__init__()
        self.devices = devices

    async def start(self) -> None:
        self._queues = {}  # queues belong to one event loop; each test run has its own

    async def close(self) -> None:
        pass

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        reply = self.devices[device_id].handle(payload)
        if reply is not None:
            self._deliver(Incoming(device_id, topics.REPLY, reply, 0))

    async def broadcast(self, payload: bytes) -> None:
        for d in self.devices:
            await self.send(d, topics.CMD, payload)


def rollout(transport, store, bundle, track, version, plan, online=None, check_every_s=1.0):
    """A staged rollout by the deployment service, as the API and the CLI run it."""
    fleet = TransportFleet(transport)
    if online is not None:
        fleet.online = online  # type: ignore[method-assign]
    service = DeploymentService(transport, store, fleet, check_every_s=check_every_s)
    dep = service.plan(BundleRef(hashlib.sha256(bundle).hexdigest(), track, version),
                       plan.device_ids, canary=plan.canary, max_drift_ms=plan.max_drift_ms,
                       soak_s=plan.soak_s)
    return service.run(dep, bundle)


@dataclass
class RolloutPlan:
    device_ids: list[str]
    canary: int = 1
    max_drift_ms: float = 1.0
    soak_s: float = 30.0


def active(dev: LoopbackDevice) -> str | None:
    entry = dev.store.active()
    return None if entry is None else f"{entry[0]} v{entry[1]}"


@pytest.fixture
def fleet():
    devices = {f"d{i}": LoopbackDevice() for i in range(4)}
    return devices, LoopbackTransport(devices)


async def _run(transport, store, plan, bundle, version=2, drift_feed=None):
    async with transport:
        if drift_feed:
            drift_feed.start()
        return await rollout(transport, store, bundle, "song", version, plan,
                             check_every_s=0.05)


def deploy_v1(transport, devices):
    v1 = make_bundle(KEY, 0.2, track="song", version=1)
    plan = RolloutPlan(list(devices), canary=0)
    return asyncio.run(_run(transport, SqliteStore(":memory:"), plan, v1, 1))


def test_canaries_then_everyone(fleet, tmp_path):
    devices, transport = fleet
    store = SqliteStore(str(tmp_path / "a.db"))
    v2 = make_bundle(KEY, 0.2, track="song", version=2)
    result = asyncio.run(_run(transport, store, RolloutPlan(list(devices), 1, 1.0, 0.3), v2))
    assert result.state == "done" and result.canaries == ["d0"]
    assert sorted(result.activated) == ["d0", "d1", "d2", "d3"]
    assert all(active(d) == "song v2" for d in devices.values())
    assert result.soak_samples == 0  # nothing played: the rollout went on, and said so


def test_drifting_canaries_stop_the_rollout_and_are_rolled_back(fleet, tmp_path):
    devices, transport = fleet
    deploy_v1(transport, devices)
    store = SqliteStore(str(tmp_path / "a.db"))
    v2 = make_bundle(KEY, 0.2, track="song", version=2)

    def drift_reports() -> None:  # the canaries report 2 ms of drift during the soak
        import time

        from gridcast.agent.clock import now_us

        for seq in range(20):
            store.add_telemetry([TelemetryBatch(d, seq, now_us(), 0, [2000, -1800], boot=1)
                                 for d in ("d0", "d1")])
            time.sleep(0.02)

    feed = threading.Thread(target=drift_reports, daemon=True)
    result = asyncio.run(_run(transport, store, RolloutPlan(list(devices), 2, 1.0, 2.0), v2,
                              drift_feed=feed))
    feed.join()  # its last reports may come after the rollout stopped
    assert result.state == "stopped" and "drift p99 over 1 ms" in result.reason
    assert sorted(result.rolled_back) == ["d0", "d1"]
    assert active(devices["d0"]) == "song v1" and active(devices["d1"]) == "song v1"
    assert active(devices["d2"]) == "song v1"  # never touched
    assert result.soak_drift_p99_ms["d0"] > 1.0


def test_a_canary_that_refuses_the_bundle_stops_everything(fleet, tmp_path):
    devices, transport = fleet
    store = SqliteStore(str(tmp_path / "a.db"))
    foreign = make_bundle(b"x" * 32, 0.2, track="song", version=2)  # signed with another key
    result = asyncio.run(_run(transport, store, RolloutPlan(list(devices), 1, 1.0, 0.1),
                              foreign))
    assert result.state == "stopped" and "d0" in result.failed
    assert "rejected" in result.failed["d0"]
    assert all(active(d) is None for d in devices.values())


def test_a_canary_going_offline_stops_the_rollout(fleet, tmp_path):
    devices, transport = fleet
    deploy_v1(transport, devices)
    v2 = make_bundle(KEY, 0.2, track="song", version=2)

    async def run():
        async with transport:
            return await rollout(transport, SqliteStore(":memory:"), v2, "song", 2,
                                 RolloutPlan(list(devices), 1, 1.0, 1.0),
                                 online=lambda d: d != "d0", check_every_s=0.05)

    result = asyncio.run(run())
    assert result.state == "stopped" and "offline" in result.reason
    assert result.rolled_back == ["d0"] and active(devices["d0"]) == "song v1"

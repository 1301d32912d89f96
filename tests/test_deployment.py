"""The deployment service (agent/deployment.py): its policy on devices made of the real
protocol Receiver, its records across a restart, and the same records from the command
line (in this process) and from the daemon's API, against a real mosquitto."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time

import aiohttp
import paho.mqtt.client as mqtt
import pytest

from gridcast.agent import client as agent_client
from gridcast.agent.clock import now_us
from gridcast.agent.deployment import (
    BundleRef,
    Deployment,
    DeploymentService,
    PlanError,
    TransportFleet,
)
from gridcast.agent.store import SqliteStore, TelemetryBatch
from gridcast.hil.bundles import make_bundle
from gridcast.host import cli
from gridcast.protocol import keys, messages, topics
from tests import test_agent_api
from tests.test_agent_api import TOKEN, request
from tests.test_agent_collector import wait_until
from tests.test_rollout import KEY, LoopbackDevice, LoopbackTransport, active

V1_SHA = b"\x01" * 32
daemon, key_path = test_agent_api.daemon, test_agent_api.key_path  # the API tests' fixtures


def fleet_at_v1(n: int = 4, key: bytes = KEY) -> dict[str, LoopbackDevice]:
    devices = {f"d{i}": LoopbackDevice(key) for i in range(n)}
    for dev in devices.values():  # as if v1 had been deployed: the store keeps it
        dev.store.active_entry = ("song", 1, V1_SHA, b"")
    return devices


def service(transport, store, **options) -> DeploymentService:
    return DeploymentService(transport, store, TransportFleet(transport), check_every_s=0.05,
                             **options)


async def plan_and_run(svc: DeploymentService, bundle: bytes, ids: list[str], progress=None,
                       **plan) -> Deployment:
    async with svc.transport:
        dep = svc.plan(BundleRef(hashlib.sha256(bundle).hexdigest(), "song", 2), ids, **plan)
        return await svc.run(dep, bundle, progress)


def test_a_failed_canary_is_rolled_back_and_nothing_else_is_touched(tmp_path):
    devices = fleet_at_v1()
    devices["d1"] = LoopbackDevice(b"o" * 32)  # holds another site's key: refuses the bundle
    devices["d1"].store.active_entry = ("song", 1, V1_SHA, b"")
    transport = LoopbackTransport(devices)
    v2 = make_bundle(KEY, 0.2, track="song", version=2)
    dep = asyncio.run(plan_and_run(service(transport, SqliteStore(str(tmp_path / "a.db"))),
                                   v2, list(devices), canary=2, soak_s=5.0))
    assert dep.state == "stopped" and dep.reason == "canary failed to activate: d1"
    assert dep.canaries == ["d0", "d1"] and dep.rolled_back == ["d0"]
    assert "rejected" in dep.failed["d1"] and not dep.results["d1"]["ok"]
    assert [active(d) for d in devices.values()] == ["song v1"] * 4
    assert devices["d2"].heard == [] and devices["d3"].heard == []  # never asked anything


def test_drift_over_the_gate_stops_with_the_devices_and_their_p99(tmp_path):
    devices = fleet_at_v1()
    transport = LoopbackTransport(devices)
    store = SqliteStore(str(tmp_path / "a.db"))
    svc = service(transport, store)

    def collector(dep: Deployment) -> None:  # telemetry the canaries send during the soak
        if dep.state == "soaking":
            later = now_us() + 1_000_000
            store.add_telemetry([TelemetryBatch("d0", 1, later, 0, [2000, -2000, 1500], boot=1),
                                 TelemetryBatch("d1", 1, later, 0, [300, -250], boot=1)])

    svc.listeners.append(collector)
    v2 = make_bundle(KEY, 0.2, track="song", version=2)
    dep = asyncio.run(plan_and_run(svc, v2, list(devices), canary=2, soak_s=5.0))
    assert dep.state == "stopped"
    assert dep.reason == "drift p99 over 1 ms on d0 (2.000 ms)"  # d1 (0.3 ms) is not named
    assert dep.soak_drift_p99_ms == {"d0": 2.0, "d1": 0.2995} and dep.soak_samples == 5
    assert sorted(dep.rolled_back) == ["d0", "d1"]
    assert [active(d) for d in devices.values()] == ["song v1"] * 4
    assert devices["d2"].heard == [] and devices["d3"].heard == []


def test_records_are_stored_at_every_state_and_read_back_after_a_restart(tmp_path):
    devices = fleet_at_v1(3)
    transport = LoopbackTransport(devices)
    path = str(tmp_path / "a.db")
    store = SqliteStore(path)
    svc = service(transport, store)
    seen: list[str] = []
    svc.listeners.append(lambda d: seen.append(d.state))
    acked = dict.fromkeys(devices, 0)  # what a progress bar is fed: bytes per device

    def progress(device_id: str, n: int) -> None:
        acked[device_id] += n

    v2 = make_bundle(KEY, 0.2, track="song", version=2)
    dep = asyncio.run(plan_and_run(svc, v2, list(devices), progress, canary=1, soak_s=0.1))
    assert seen == ["pending", "canary", "soaking", "rolling-out", "done"]
    assert acked == dict.fromkeys(devices, len(v2))
    assert dep.reason == "3 of 3 devices active" and sorted(dep.activated) == list(devices)
    assert all(r["ok"] and r["bytes"] == len(v2) for r in dep.results.values())
    store.close()

    again = DeploymentService(transport, SqliteStore(path), TransportFleet(transport))
    stored = again.record(dep.id)
    assert stored is not None and Deployment.from_dict(stored) == dep
    assert [(r["id"], r["state"]) for r in again.records()] == [(dep.id, "done")]
    assert again.record("nope") is None


def test_devices_that_run_the_bundle_already_are_skipped_unless_forced(tmp_path):
    devices = fleet_at_v1(3)
    transport = LoopbackTransport(devices)
    v2 = make_bundle(KEY, 0.2, track="song", version=2)
    svc = service(transport, SqliteStore(str(tmp_path / "a.db")))
    asyncio.run(plan_and_run(svc, v2, ["d0"]))
    transport.status["d0"] = messages.decode(messages.encode(  # what d0 then says
        "status", state="online", active_track="song", bundle_version=2))
    dep = asyncio.run(plan_and_run(svc, v2, list(devices), canary=1))
    assert dep.skipped == ["d0"] and dep.canaries == ["d1"]  # a canary that proves something
    assert dep.results["d0"]["reason"] == "already-active" and devices["d0"].heard.count(
        "bundle_offer") == 1
    assert dep.state == "done" and dep.reason == "3 of 3 devices active (1 already were)"
    forced = asyncio.run(plan_and_run(svc, v2, ["d0"], force=True))
    assert forced.skipped == [] and devices["d0"].heard.count("bundle_offer") == 2


def test_a_device_in_a_running_deployment_is_not_planned_again(tmp_path):
    devices = fleet_at_v1(3)
    svc = service(LoopbackTransport(devices), SqliteStore(str(tmp_path / "a.db")))
    ref = BundleRef("00" * 32, "song", 2)
    first = svc.plan(ref, ["d0", "d1"])
    with pytest.raises(PlanError, match=f"d1 \\({first.id}\\)") as refused:
        svc.plan(ref, ["d1", "d2"])
    assert refused.value.status == 409
    assert svc.plan(ref, ["d2"]).devices == ["d2"]  # others may go meanwhile
    with pytest.raises(PlanError, match="known device ids") as empty:
        svc.plan(ref, [])
    assert empty.value.status == 400


# -- the same records from the command line and from the daemon --------------------------
class MqttDevice:
    """A LoopbackDevice on its own MQTT connection, as the firmware talks: retained hello
    and status (sent again after every activation and rollback), replies to commands and
    chunks, and with ``drift_us`` a telemetry batch every 50 ms."""

    def __init__(self, broker_port: int, device_id: str, key: bytes, active_version: int,
                 drift_us: int = 0) -> None:
        self.id, self.drift_us = device_id, drift_us
        self.boot = random.getrandbits(31)  # a new device run: its batches are new rows
        self.published: list[mqtt.MQTTMessageInfo] = []
        self.dev = LoopbackDevice(key)
        self.dev.store.active_entry = ("song", active_version, V1_SHA, b"")
        self.sent_batches = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker_port)
        self.client.subscribe([(topics.device_topic(device_id, topics.CMD), 1),
                               (topics.device_topic(device_id, topics.BUNDLE), 1)])
        self.client.loop_start()
        self._pub(topics.HELLO, messages.encode("hello", device_id=device_id, max_frame=16384,
                                                window=4), retain=True)
        self._status()
        for info in self.published:  # retained before anyone looks: no older status seen
            info.wait_for_publish(10)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._telemetry, daemon=True)
        self.thread.start()

    def _pub(self, leaf: str, payload: bytes, retain: bool = False) -> None:
        self.published.append(self.client.publish(topics.device_topic(self.id, leaf), payload,
                                                  qos=1, retain=retain))

    def _status(self) -> None:
        track, version, _ = self.dev.store.active()
        self._pub(topics.STATUS, messages.encode("status", state="online", active_track=track,
                                                 bundle_version=version), retain=True)

    def _on_message(self, client, userdata, m) -> None:
        reply = self.dev.handle(m.payload)
        if reply is not None:
            self._pub(topics.REPLY, reply)
            if messages.decode(reply).kind == "activated":
                self._status()

    def _telemetry(self) -> None:
        while self.drift_us and not self.stop.wait(0.05):
            self._pub(topics.TELEMETRY, messages.encode(
                "telemetry", seq=self.sent_batches, drift_us=[self.drift_us, -self.drift_us],
                boot=self.boot))
            self.sent_batches += 1

    def stored_by(self, agent_url: str) -> int:
        """How many of this run's telemetry batches the agent's store holds."""
        _, batches = request(f"{agent_url}/api/telemetry?device={self.id}&limit=10000")
        return sum(b["boot"] == self.boot for b in batches)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for info in self.published:  # everything sent reached the broker
            info.wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()


def comparable(record: dict) -> dict:
    """A record without what differs between any two runs: id, times, and the drift
    figures of the soak's checks (how many samples had arrived at each)."""
    d = Deployment.from_dict(record).to_dict()
    for name in ("id", "seconds", "soak_samples", "soak_drift_p99_ms"):
        d.pop(name)
    d["results"] = {k: {f: v for f, v in r.items() if f not in ("seconds", "resends")}
                    for k, r in d["results"].items()}
    return d


def deployment_events(url: str, stop: threading.Event, into: list[dict]) -> threading.Thread:
    """The daemon's WebSocket ``deployment`` events, collected in a thread until ``stop``."""
    ready = threading.Event()

    async def listen() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url.replace("http", "ws") + "/ws") as ws:
            ready.set()
            while not stop.is_set():
                try:
                    m = await ws.receive_json(timeout=0.2)
                except TimeoutError:
                    continue
                if m["type"] == "deployment":
                    into.append(m)

    thread = threading.Thread(target=asyncio.run, args=(listen(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


SCENARIOS = {  # name -> (active version per device, drift per device in us, canary, soak)
    "skip-canary-rest": ({"p0": 1, "p1": 1, "p2": 1, "p3": 2}, {}, 1, 0.3),
    "drift-gate": ({"p0": 1, "p1": 1, "p2": 1}, {"p0": 2000, "p1": 400}, 2, 4.0),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_command_line_and_the_daemon_keep_the_same_records(scenario, daemon, mosquitto,
                                                               key_path, tmp_path, capsys):
    versions, drift, canary, soak = SCENARIOS[scenario]
    key = keys.load(key_path)
    bundle = tmp_path / "song.gcb"
    bundle.write_bytes(make_bundle(key, 0.2, track="song", version=2))
    ids = list(versions)
    args = ["deploy", str(bundle), "--to", *ids, "--canary", str(canary), "--soak", str(soak),
            "--json"]
    records, events, stop = [], [], threading.Event()
    for place in ("daemon", "command line"):
        fleet = [MqttDevice(mosquitto.port, d, key, v, drift.get(d, 0))
                 for d, v in versions.items()]
        try:
            if place == "daemon":
                wait_until(lambda: {d["id"]: d["bundle_version"] for d in request(
                    daemon.url + "/api/devices")[1] if d["online"]} == versions)
                listener = deployment_events(daemon.url, stop, events)
                code = cli.main([*args, "--agent", daemon.url, "--token", TOKEN])
            else:  # the daemon still runs: its collectors must lose nothing meanwhile
                code = cli.main([*args, "--broker", mosquitto.url, "--local"])
            records.append(json.loads(capsys.readouterr().out))
            assert code == (0 if records[-1]["state"] == "done" else 1)
        finally:
            for dev in fleet:
                dev.close()
        if place == "daemon":
            stop.set()
            listener.join(10)
            stored = [r for r in request(daemon.url + "/api/deployments")[1]
                      if r["id"] == records[0]["id"]]
            assert comparable(stored[0]) == comparable(records[0])
        else:
            for dev in fleet:
                wait_until(lambda dev=dev: dev.stored_by(daemon.url) == dev.sent_batches)
    assert comparable(records[0]) == comparable(records[1])
    states = [e["state"] for e in events]
    assert states == sorted(set(states), key=states.index)  # each state once, in order
    if scenario == "skip-canary-rest":
        assert records[0]["state"] == "done" and records[0]["skipped"] == ["p3"]
        assert states == ["pending", "canary", "soaking", "rolling-out", "done"]
    else:
        assert records[0]["state"] == "stopped"
        assert all(r["reason"] == "drift p99 over 1 ms on p0 (2.000 ms)" for r in records)
        assert all(r["soak_drift_p99_ms"]["p0"] == 2.0 for r in records)
        assert sorted(records[0]["rolled_back"]) == ["p0", "p1"]
        assert "p2" not in records[0]["results"]
        assert states == ["pending", "canary", "soaking", "stopped"]


def test_a_running_agent_is_found_and_used_on_its_broker_only(daemon, mosquitto, key_path,
                                                             tmp_path, capsys, monkeypatch):
    key = keys.load(key_path)
    bundle = tmp_path / "song.gcb"
    bundle.write_bytes(make_bundle(key, 0.2, track="song", version=2))
    monkeypatch.setattr(agent_client, "DEFAULT_URL", daemon.url)
    monkeypatch.setenv("GRIDCAST_TOKEN", TOKEN)
    dev = MqttDevice(mosquitto.port, "found-1", key, 1)
    try:
        wait_until(lambda: [d["id"] for d in request(daemon.url + "/api/devices")[1]
                            if d["online"]] == ["found-1"])
        code = cli.main(["deploy", str(bundle), "--to", "found-1", "--broker", mosquitto.url,
                         "--json"])
        out = capsys.readouterr()
        assert code == 0 and f"an agent is running at {daemon.url}" in out.err
        result = json.loads(out.out)  # a plain deployment's output, wherever it ran
        assert [(d["id"], d["ok"]) for d in result["devices"]] == [("found-1", True)]
        assert [r["id"] for r in request(daemon.url + "/api/deployments")[1]] == [
            result["deployment"]]
        started = time.monotonic()
        code = cli.main(["deploy", str(bundle), "--to", "found-1", "--broker",
                         "mqtt://127.0.0.1:1", "--json"])  # another broker: not the agent's
        assert code == 1 and time.monotonic() - started < 10
        assert "cannot reach the broker at mqtt://127.0.0.1:1" in capsys.readouterr().err
    finally:
        dev.close()

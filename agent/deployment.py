"""The one deployment service: plan, canary, soak, drift gate, rollback, result records.

The daemon's API (``POST /api/deployments``) and ``gridcast deploy`` run this
service; the command runs it in its own process (``in_process``) when no agent
daemon is given or running. What is said to each device (the bundle transfer, the
rollback command) is agent/deploy.py's.

1. **Plan** (``plan``): the target devices (``"all"``: every device the fleet knows
   as online), less those that already run this bundle: the track and version
   their last status or hello reported (``force`` sends anyway). The first
   ``canary`` of the others are the canaries.
2. **Canary**: deploy to the canaries; every one must activate the bundle.
3. **Soak and drift gate**: for ``soak_s`` seconds the canaries' |drift| p99, over
   what they report meanwhile (the store, fed by a collector), must stay at or
   under ``max_drift_ms``, and they must stay online. Without drift reports
   (devices not playing) the deployment goes on, and the log says so.
4. **Rollout**: deploy to the rest.

A canary that fails to activate, drifts over the gate or goes offline stops the
deployment: every canary that activated is rolled back to its previous bundle
and no other device is touched.

States: ``pending`` -> ``canary`` -> ``soaking`` -> ``rolling-out`` -> ``done`` |
``done-with-failures`` | ``stopped``, with ``reason`` saying why in one line.
Every state change is stored (the store's ``deployments`` table: the record as
JSON) and handed to the listeners (the API's WebSocket, the CLI's state lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from gridcast.agent import deploy, drift_stats, presence
from gridcast.agent.clock import now_us
from gridcast.agent.registry import Registry
from gridcast.agent.store import SqliteStore, Store, StoreError
from gridcast.agent.transport import Incoming, Transport, open_transport
from gridcast.protocol.errors import GridcastError

log = logging.getLogger("gridcast.deployment")

FINAL_STATES = ("done", "done-with-failures", "stopped")
KEEP_RECENT = 100  # finished records kept in memory; older ones are read from the store
ALREADY_ACTIVE = "already-active"  # the result reason of a device that was skipped
Progress = Callable[[str, int], None]  # (device id, bytes it newly acknowledged)
Listener = Callable[["Deployment"], None]


class PlanError(GridcastError):
    """A deployment that cannot start; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BundleRef:
    """Which bundle: its SHA-256 (hex) and what its verified header says."""

    sha256: str
    track_id: str
    bundle_version: int


@dataclass
class Deployment:
    """One deployment's record: what was asked, where it stands, each device's result.

    ``results`` maps a device to its transfer result (agent/deploy.py's
    DeployResult as a dict; a skipped device has reason ``already-active``).
    ``seconds`` counts from the start of the run; drift figures are milliseconds.
    """

    id: str
    bundle_sha256: str
    track_id: str
    bundle_version: int
    devices: list[str]  # the targets, in the order given
    canary: int = 0
    max_drift_ms: float = 1.0
    soak_s: float = 0.0
    state: str = "pending"
    reason: str = ""
    skipped: list[str] = field(default_factory=list)
    canaries: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)
    soak_drift_p99_ms: dict[str, float | None] = field(default_factory=dict)
    soak_samples: int = 0
    seconds: float = 0.0
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        """A record as stored (extra columns such as ``created_us`` are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Fleet(Protocol):
    """What the service knows about the devices without asking them."""

    def known(self) -> list[str] | None:
        """Every device id known (None: cannot tell; any id given is tried)."""

    def online(self, device_id: str) -> bool: ...

    def active(self, device_id: str) -> tuple[str, int] | None:
        """(track, bundle version) the device last said it runs; None: not known."""


class RegistryFleet:
    """The daemon's view: the registry's records, kept from every device's status."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def known(self) -> list[str]:
        return [d.id for d in self.registry.snapshot()]

    def online(self, device_id: str) -> bool:
        record = self.registry.devices.get(device_id)
        return record is not None and record.online

    def active(self, device_id: str) -> tuple[str, int] | None:
        record = self.registry.devices.get(device_id)
        if record is None or not record.active_track:
            return None
        return record.active_track, record.bundle_version


class TransportFleet:
    """A command's view: the status and hello messages its transport has seen. A device
    never heard from counts as online: it was named on the command line."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def known(self) -> None:
        return None

    async def settle(self, device_ids: list[str], timeout_s: float = 1.0) -> None:
        """Wait, at most ``timeout_s``, for every device's status: retained ones reach the
        transport just after it subscribed, and the plan skips by what they say."""
        heard = self.transport.listen_all()  # same event loop as the delivery
        deadline = time.monotonic() + timeout_s
        try:
            while any(d not in self.transport.status for d in device_ids):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await heard.get()
        except TimeoutError:
            pass
        finally:
            self.transport.unlisten(heard)

    def online(self, device_id: str) -> bool:
        status = self.transport.status.get(device_id)
        return status is None or presence.is_online(status)

    def active(self, device_id: str) -> tuple[str, int] | None:
        status = self.transport.status.get(device_id)
        if status is not None:  # sent again after every activation and rollback
            return (status.active_track, status.bundle_version) if status.active_track else None
        hello = self.transport.hellos.get(device_id)
        if hello is not None and hello.active_track:
            return hello.active_track, hello.active_version
        return None


class DeploymentService:
    """Plans and runs deployments over one transport, recording them in one store.

    ``deploy_options`` go to agent/deploy.py's ``deploy`` (``parallel``,
    ``chunk_bytes``); ``check_every_s`` is how often the soak looks at the drift.
    """

    def __init__(self, transport: Transport, store: Store, fleet: Fleet, *,
                 check_every_s: float = 1.0, **deploy_options: Any) -> None:
        self.transport, self.store, self.fleet = transport, store, fleet
        self.check_every_s = check_every_s
        self.deploy_options = deploy_options
        self.listeners: list[Listener] = []
        self.recent: dict[str, Deployment] = {}  # this process's, up to date while running
        self._started: dict[str, float] = {}

    # -- plan ------------------------------------------------------------------------------
    def plan(self, bundle: BundleRef, devices: list[str] | str = "all", *, canary: int = 0,
             max_drift_ms: float = 1.0, soak_s: float = 0.0, force: bool = False) -> Deployment:
        """A pending deployment (not yet stored or started); PlanError saying why not."""
        known = self.fleet.known()
        if devices == "all" and known is not None:
            devices = [d for d in known if self.fleet.online(d)]
        if (not isinstance(devices, list) or not devices
                or not all(isinstance(d, str) and (known is None or d in known)
                           for d in devices)):
            raise PlanError(f"devices: give known device ids or \"all\"; known: "
                            f"{sorted(known or [])}")
        if canary < 0 or soak_s < 0 or max_drift_ms < 0:
            raise PlanError("canary, max_drift_ms and soak_s must not be negative")
        devices = list(dict.fromkeys(devices))
        busy = sorted({f"{d} ({dep.id})" for dep in self.recent.values() if not dep.finished
                       for d in dep.devices if d in devices})
        if busy:
            raise PlanError(f"already being deployed to: {', '.join(busy)}; wait for that "
                            "deployment to finish", status=409)
        dep = Deployment(uuid.uuid4().hex[:12], bundle.sha256, bundle.track_id,
                         bundle.bundle_version, devices, canary, max_drift_ms, soak_s)
        if not force:
            dep.skipped = [d for d in devices
                           if self.fleet.active(d) == (bundle.track_id, bundle.bundle_version)]
        for d in dep.skipped:
            dep.results[d] = deploy.DeployResult(d, True, reason=ALREADY_ACTIVE).to_dict()
        finished = [k for k, d in self.recent.items() if d.finished]
        for k in finished[:max(0, len(finished) - KEEP_RECENT)]:
            del self.recent[k]
        self.recent[dep.id] = dep
        return dep

    # -- run -------------------------------------------------------------------------------
    async def run(self, dep: Deployment, bundle: bytes,
                  progress: Progress | None = None) -> Deployment:
        """Run a planned deployment to its end; the record says how it went (a link or
        database failure stops it with the reason; it does not raise)."""
        self._started[dep.id] = time.monotonic()
        try:
            await self._run(dep, bundle, progress)
        except asyncio.CancelledError:
            await self._state(dep, "stopped", "cancelled (the agent stopped)")
            raise
        except (GridcastError, OSError) as exc:
            log.exception("deployment %s failed", dep.id)
            await self._state(dep, "stopped", f"failed: {exc}")
        finally:
            self._started.pop(dep.id, None)
        return dep

    async def _run(self, dep: Deployment, bundle: bytes, progress: Progress | None) -> None:
        todo = [d for d in dep.devices if d not in dep.skipped]
        dep.canaries = todo[:dep.canary]
        rest = todo[len(dep.canaries):]
        await self._state(dep, "pending", f"{len(todo)} devices to deploy to"
                          + (f", {len(dep.skipped)} already run this bundle"
                             if dep.skipped else ""))
        if dep.canaries:
            await self._state(dep, "canary", ", ".join(dep.canaries))
            await self._send(dep, dep.canaries, bundle, progress)
            if dep.failed:
                await self._rollback(dep)
                await self._state(dep, "stopped",
                                  f"canary failed to activate: {', '.join(dep.failed)}")
                return
            why = await self._soak(dep)
            if why:
                await self._rollback(dep)
                await self._state(dep, "stopped", why)
                return
        if rest:
            await self._state(dep, "rolling-out", f"{len(rest)} more devices")
            await self._send(dep, rest, bundle, progress)
        active = len(dep.activated) + len(dep.skipped)
        await self._state(dep, "done-with-failures" if dep.failed else "done",
                          f"{active} of {len(dep.devices)} devices active"
                          + (f" ({len(dep.skipped)} already were)" if dep.skipped else ""))

    async def _send(self, dep: Deployment, device_ids: list[str], bundle: bytes,
                    progress: Progress | None) -> None:
        outcome = await deploy.deploy(self.transport, device_ids, bundle, dep.track_id,
                                      dep.bundle_version, progress=progress,
                                      **self.deploy_options)
        for r in outcome:
            dep.results[r.id] = r.to_dict()
            if r.ok:
                dep.activated.append(r.id)
            else:
                dep.failed[r.id] = r.error

    async def _soak(self, dep: Deployment) -> str:
        """The drift gate over the soak: '' when the canaries pass, else why not."""
        await self._state(dep, "soaking",
                          f"{dep.soak_s:g} s, |drift| p99 <= {dep.max_drift_ms:g} ms")
        since = now_us()
        deadline = time.monotonic() + dep.soak_s
        while True:
            drift = await asyncio.to_thread(self._drift_since, dep.canaries, since)
            dep.soak_samples = sum(len(v) for v in drift.values())
            dep.soak_drift_p99_ms = {d: drift_stats.percentile_ms(v, 99)
                                     for d, v in drift.items()}
            over = {d: p for d, p in dep.soak_drift_p99_ms.items()
                    if p is not None and p > dep.max_drift_ms}
            if over:
                return (f"drift p99 over {dep.max_drift_ms:g} ms on "
                        + ", ".join(f"{d} ({p:.3f} ms)" for d, p in over.items()))
            gone = [d for d in dep.canaries if not self.fleet.online(d)]
            if gone:
                return f"canary offline: {', '.join(gone)}"
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(self.check_every_s, max(0.0, deadline - time.monotonic())))
        if dep.soak_samples == 0:
            log.warning("deployment %s: no drift reports during the soak (devices not "
                        "playing?); continuing", dep.id)
        return ""

    def _drift_since(self, device_ids: list[str], since_us: int) -> dict[str, list[int]]:
        return {d: [v for _, v in self.store.drift_samples(d, since_us)] for d in device_ids}

    async def _rollback(self, dep: Deployment) -> None:
        for r in await deploy.rollback(self.transport, list(dep.activated)):
            if r.ok:
                dep.rolled_back.append(r.id)
            else:
                dep.failed.setdefault(r.id, r.error)

    async def _state(self, dep: Deployment, name: str, reason: str = "") -> None:
        """A new state: stored, then handed to every listener."""
        dep.state, dep.reason = name, reason or dep.reason
        if dep.id in self._started:
            dep.seconds = round(time.monotonic() - self._started[dep.id], 3)
        log.info("deployment %s of %s v%d: %s %s", dep.id, dep.track_id, dep.bundle_version,
                 name, reason)
        try:
            await asyncio.to_thread(self.store.save_deployment, dep.id, dep.bundle_sha256,
                                    dep.state, dep.to_dict())
        except StoreError as exc:  # the run goes on; this process still answers for it
            log.error("deployment %s: record not stored: %s", dep.id, exc)
        for listener in list(self.listeners):
            listener(dep)

    # -- records ---------------------------------------------------------------------------
    def record(self, dep_id: str) -> dict | None:
        """One deployment's record: this process's copy if it has one, else the stored."""
        if dep_id in self.recent:
            return self.recent[dep_id].to_dict()
        return next((d for d in self.store.deployments() if d["id"] == dep_id), None)

    def records(self) -> list[dict]:
        """Every stored record, oldest first (with ``created_us`` and ``updated_us``)."""
        return self.store.deployments()


@contextlib.asynccontextmanager
async def in_process(url: str, *, collect_drift: bool = False,
                     **options: Any) -> AsyncIterator[DeploymentService]:
    """The service for a command without the daemon: a transport for ``url``, and a
    temporary store that goes when the block ends. ``collect_drift``: a collector
    stores the devices' telemetry for the drift gate; on MQTT it shares the process's
    one connection with a plain (not shared) subscription, so a running daemon's
    collectors still get every batch. ``options`` go to DeploymentService."""
    from gridcast.agent.collector import Collector, telemetry_batch
    from gridcast.agent.mqtt import MqttConnection
    from gridcast.agent.transport_mqtt import MqttTransport

    mqtt = (MqttConnection.from_url(url, client_id=f"gridcast-deploy-{os.getpid()}")
            if url.startswith(("mqtt://", "mqtts://")) else None)
    transport = (open_transport(url) if mqtt is None
                 else MqttTransport(mqtt, telemetry=False))
    async with contextlib.AsyncExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="gridcast-deploy-"))
        store = SqliteStore(os.path.join(folder, "deployment.db"))
        stack.callback(store.close)
        if collect_drift:
            collector = Collector(store, mqtt, shared=False)
            if mqtt is None:  # a serial or BLE link: its telemetry comes through the link

                def to_collector(item: Incoming) -> None:
                    if item.message.kind == "telemetry":
                        collector.submit(telemetry_batch(item.device_id, item.message,
                                                         item.received_us))

                transport.taps.append(to_collector)
            collector.start()
            stack.push_async_callback(asyncio.to_thread, collector.stop)
        await stack.enter_async_context(transport)
        if mqtt is not None:
            await mqtt.start_async()  # MqttError (a TransportError) names broker and cause
            stack.push_async_callback(asyncio.to_thread, mqtt.stop)
        yield DeploymentService(transport, store, TransportFleet(transport), **options)

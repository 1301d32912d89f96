"""The agent's HTTP and WebSocket API (aiohttp), its dashboard and its Prometheus metrics.

Reads:  GET /health, /metrics, /api/devices, /api/devices/{id}, /api/devices/{id}/drift,
        /api/devices/{id}/light_offset (and POST/PUT it: agent/light_offset.py),
        /api/telemetry, /api/bundles, /api/deployments, /api/deployments/{id},
        /api/alerts; GET / (dashboard); GET /ws (live telemetry as JSON messages).
Writes: POST /api/bundles (the bundle's bytes; verified with the agent's key),
        POST /api/deployments ({"bundle": sha256, "devices": [...] or "all",
        "canary": N, "max_drift_ms": X, "soak_s": S, "force": false}), run by the
        deployment service (agent/deployment.py); its state changes go to the
        WebSocket as ``deployment`` events.

Every write needs ``Authorization: Bearer <token>``. When the agent listens on
anything but localhost, every request but /health needs it (the dashboard and
WebSocket also take ``?token=``, since browsers cannot set headers there).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from gridcast.agent import drift_stats, light_offset, live_api, map_api, player_api
from gridcast.agent.clock import now_us
from gridcast.agent.config import LOCAL_BINDS
from gridcast.agent.core import AgentCore
from gridcast.agent.deployment import (
    BundleRef,
    Deployment,
    DeploymentService,
    PlanError,
    RegistryFleet,
)
from gridcast.agent.rate_limit import ApiRateLimiter
from gridcast.agent.store import StoreError
from gridcast.host.atomic_file import write_atomically
from gridcast.protocol import bundle_format, bundle_reader, keys
from gridcast.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from gridcast.agent.metrics import Exposition

log = logging.getLogger("gridcast.api")

DASHBOARD = os.path.join(os.path.dirname(__file__), "dashboard", "index.html")
SUMMARY_WINDOW_S = 60
MAX_BUNDLE_UPLOAD = bundle_format.MAX_BUNDLE_BYTES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class Api:
    def __init__(self, core: AgentCore, token: str | None) -> None:
        self.core, self.token = core, token
        self.public = core.config.bind not in LOCAL_BINDS
        self.summary: dict[str, dict] = {}
        self._devices_body = b"[]"
        self._device_bodies: dict[str, bytes] = {}
        self.deployments = DeploymentService(core.transport, core.store,
                                             RegistryFleet(core.registry))
        self.deployments.listeners.append(self._deployment_changed)
        self.sockets: set[web.WebSocketResponse] = set()
        self.started = time.monotonic()
        self.requests = 0
        self.rate_limit = ApiRateLimiter.from_config(core.config, token)
        self.key: bytes | None = keys.load(core.config.key_file) if core.config.key_file else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._metrics: Exposition | None = None

    # -- app ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        # No rate limit configured (api_rate_per_s = 0 and no per-token rates): no middleware
        # to pass through on every request.
        limits = [self.rate_limit.middleware()] if self.rate_limit.enabled else []
        app = web.Application(middlewares=[*limits, self._auth],
                              client_max_size=MAX_BUNDLE_UPLOAD + 4096)
        r = app.router
        r.add_get("/", self.dashboard)
        r.add_get("/health", self.health)
        r.add_get("/metrics", self.metrics)
        r.add_get("/ws", self.websocket)
        r.add_get("/api/devices", self.devices)
        r.add_get("/api/devices/{id}", self.device)
        r.add_get("/api/devices/{id}/drift", self.device_drift)
        r.add_get("/api/telemetry", self.telemetry)
        r.add_get("/api/bundles", self.bundles)
        r.add_post("/api/bundles", self.upload_bundle)
        r.add_get("/api/deployments", self.list_deployments)
        r.add_post("/api/deployments", self.create_deployment)
        r.add_get("/api/deployments/{id}", self.get_deployment)
        r.add_get("/api/alerts", self.alerts)
        self.light_offsets = light_offset.register(app, self)  # /api/devices/{id}/light_offset
        self.player = player_api.register(app, self)  # /api/player: the show player
        self.live = live_api.register(app, self)  # /api/live: live mode (agent/live_api.py)
        self.maps = map_api.register(app, self)  # /editor, /api/maps: the grid editor
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self.core.add_listener(self._from_thread)
        self._spawn(self._summary_loop())

    async def _on_shutdown(self, app: web.Application) -> None:
        self.core.remove_listener(self._from_thread)
        for ws in list(self.sockets):
            await ws.close()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if request.path == "/health" or not (write or self.public):
            return await handler(request)
        if not self.rate_limit.tokens:
            return error(403, "this agent has no token configured, so it accepts no writes; "
                              "set token in the config (or GRIDCAST_TOKEN)")
        given = request.headers.get("Authorization", "")
        supplied = given[7:] if given.startswith("Bearer ") else request.query.get("token", "")
        if self.rate_limit.token_name(supplied) is None:  # `token` or one of api_tokens
            return error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        return await handler(request)

    # -- live --------------------------------------------------------------------------------
    def _from_thread(self, kind: str, data: dict) -> None:
        if self._loop is not None and self.sockets:
            self._loop.call_soon_threadsafe(self._broadcast, {"type": kind, **data})

    def _broadcast(self, message: dict) -> None:
        text = json.dumps(message)
        for ws in list(self.sockets):
            if ws.closed:
                self.sockets.discard(ws)
            else:
                self._spawn(ws.send_str(text))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.sockets.add(ws)
        await ws.send_json({"type": "hello", "devices": list(self.summary.values())})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets.discard(ws)
        return ws

    async def _summary_loop(self) -> None:
        while True:
            try:
                summary = await asyncio.to_thread(self._summarize)
                # Serialized once a second, not once per request: 200 clients polling the
                # device list cost one json.dumps a second between them.
                self._devices_body = json.dumps(list(summary.values())).encode()
                self._device_bodies = {k: json.dumps(v).encode() for k, v in summary.items()}
                self.summary = summary
            except StoreError as exc:
                log.error("device summary: %s", exc)
            await asyncio.sleep(1.0)

    def _summarize(self) -> dict[str, dict]:
        """Every device's row, from two queries (requests then read it from memory)."""
        since = now_us() - SUMMARY_WINDOW_S * 1_000_000
        recent = self.core.store.recent_drift(since)
        lost = self.core.store.lost_by_device()
        out = {}
        for d in self.core.registry.snapshot():
            drift = drift_stats.absolute(recent.get(d.id, []))
            out[d.id] = {**vars(d), "drift_p50_ms": drift_stats.percentile_ms(drift, 50),
                         "drift_p99_ms": drift_stats.percentile_ms(drift, 99),
                         "samples_60s": int(drift.size),
                         "lost": lost.get(d.id, 0),
                         "alert": self.core.alerts.active.get(d.id, False),
                         **self.core.ingest.status(d.id)}  # throttled, dropped
        return out

    # -- reads -------------------------------------------------------------------------------
    async def dashboard(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(DASHBOARD)

    async def health(self, request: web.Request) -> web.Response:
        ok_db = True
        try:
            await asyncio.to_thread(self.core.store.reachable)
        except StoreError:
            ok_db = False
        collectors = [vars(c.stats) for c in self.core.collectors]
        broker = self.core.broker_connected
        healthy = ok_db and broker
        return web.json_response({"status": "ok" if healthy else "degraded", "database": ok_db,
                                  "broker": broker, "broker_url": self.core.config.broker,
                                  "uptime_s": round(time.monotonic() - self.started, 1),
                                  "collectors": collectors}, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        if self._metrics is None:  # prometheus_client is imported on the first scrape
            from gridcast.agent.metrics import Exposition

            self._metrics = Exposition(self)
        body, content_type = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def devices(self, request: web.Request) -> web.Response:
        return web.Response(body=self._devices_body, content_type="application/json")

    def _known(self, request: web.Request) -> str:
        """The request's device id, known to the summary or the registry (in memory), else
        to the store (one indexed read: a device another agent process registered)."""
        device_id = request.match_info["id"]
        if (device_id not in self.summary and device_id not in self.core.registry.devices
                and self.core.store.device(device_id) is None):
            raise web.HTTPNotFound(text=json.dumps({"error": f"unknown device {device_id!r}"}),
                                   content_type="application/json")
        return device_id

    async def device(self, request: web.Request) -> web.Response:
        device_id = self._known(request)
        if device_id in self._device_bodies:
            return web.Response(body=self._device_bodies[device_id],
                                content_type="application/json")
        record = await asyncio.to_thread(self.core.store.device, device_id)
        if record is None:  # known to the registry, not stored yet (the write just failed)
            return error(404, f"unknown device {device_id!r}")
        return web.json_response(vars(record))

    async def device_drift(self, request: web.Request) -> web.Response:
        device_id = self._known(request)
        resolution = request.query.get("resolution", "1s")
        if resolution not in ("1s", "1m"):
            return error(400, f"resolution={resolution!r}: use 1s or 1m")
        since = _int_param(request, "since_s", int(time.time()) - 3600)
        aggs = await asyncio.to_thread(self.core.store.aggregates, device_id, resolution, since)
        return web.json_response([vars(a) for a in aggs])

    async def telemetry(self, request: web.Request) -> web.Response:
        device_id = request.query.get("device")
        if not device_id:
            return error(400, "give ?device=ID (and optionally since_us, limit)")
        since = _int_param(request, "since_us", 0)
        limit = min(_int_param(request, "limit", 1000), 10_000)
        batches = await asyncio.to_thread(self.core.store.telemetry, device_id, since, limit)
        return web.json_response([{**vars(b), "drift_us": list(b.drift_us)} for b in batches])

    async def bundles(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.core.store.bundles))

    async def list_deployments(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.deployments.records))

    async def get_deployment(self, request: web.Request) -> web.Response:
        dep_id = request.match_info["id"]
        found = await asyncio.to_thread(self.deployments.record, dep_id)
        return web.json_response(found) if found else error(404, f"unknown deployment {dep_id!r}")

    async def alerts(self, request: web.Request) -> web.Response:
        return web.json_response({"active": self.core.alerts.active,
                                  "events": self.core.alerts.sent[-100:]})

    # -- writes ------------------------------------------------------------------------------
    async def upload_bundle(self, request: web.Request) -> web.Response:
        if self.key is None:
            return error(409, "this agent has no key_file configured, so it cannot verify "
                              "bundles; set key_file in the config")
        data = await request.read()
        try:
            info = bundle_reader.verify(io.BytesIO(data), len(data),
                                        {keys.key_id(self.key): self.key}, 2**31)
        except ProtocolError as exc:
            return error(422, f"bundle rejected: {exc}", reason=exc.code)
        sha = hashlib.sha256(data).hexdigest()
        folder = self.core.config.bundle_dir
        path = os.path.join(folder, f"{sha}.gcb")
        try:
            write_atomically(path, data)
            await asyncio.to_thread(self.core.store.add_bundle, sha, info.track_id,
                                    info.bundle_version, len(data), path)
        except (OSError, StoreError) as exc:
            return error(507, f"could not store the bundle: {exc}")
        return web.json_response({"sha256": sha, "track_id": info.track_id,
                                  "bundle_version": info.bundle_version, "size": len(data)},
                                 status=201)

    async def create_deployment(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "body must be JSON: {\"bundle\": SHA256, \"devices\": [...] or "
                              "\"all\", \"canary\": N, \"max_drift_ms\": X, \"soak_s\": S}")
        if not isinstance(body, dict):
            return error(400, "body must be a JSON object")
        bundle = await asyncio.to_thread(self.core.store.bundle, str(body.get("bundle", "")))
        if bundle is None:
            return error(404, f"unknown bundle {body.get('bundle')!r}; upload it to "
                              "POST /api/bundles first")
        try:
            canary = int(body.get("canary", 0))
            max_drift_ms = float(body.get("max_drift_ms", self.core.config.alert_threshold_ms))
            soak_s = float(body.get("soak_s", 0))
        except (TypeError, ValueError) as exc:
            return error(400, f"canary, max_drift_ms and soak_s must be numbers ({exc})")
        try:
            with open(bundle["path"], "rb") as f:
                data = f.read()
        except OSError as exc:
            return error(500, f"cannot read the stored bundle ({exc}); upload it again")
        try:
            dep = self.deployments.plan(
                BundleRef(bundle["sha256"], bundle["track_id"], bundle["bundle_version"]),
                body.get("devices", "all"), canary=canary, max_drift_ms=max_drift_ms,
                soak_s=soak_s, force=bool(body.get("force", False)))
        except PlanError as exc:
            return error(exc.status, str(exc))
        self._spawn(self.deployments.run(dep, data))
        return web.json_response({"id": dep.id, "state": dep.state, "devices": dep.devices},
                                 status=202)

    def _deployment_changed(self, dep: Deployment) -> None:
        if self.sockets:
            self._broadcast({"type": "deployment", **dep.to_dict()})


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name}={text!r}: expected an "
                                                           "integer"}),
                                 content_type="application/json") from None

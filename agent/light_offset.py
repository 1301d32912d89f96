"""Each device's light offset, kept by the agent: set through the API, held by the device.

A light offset (docs/protocol.md section 9) is how long after the LED write the light
is seen: a long LED chain, a projector, a video wall. The agent keeps the wanted value
per device in the registry (stored), sends it with the ``light_offset`` message, and
sends it again whenever the device's hello or online status reports another value: a
device that was offline when it was set, or that was reflashed, gets it when it comes
back. The device answers a ``light_offset`` with its status, so the registry sees the
new value without asking.

Routes (registered from agent/api.py):

    GET  /api/devices/{id}/light_offset
         -> {"device", "light_offset_ms", "reported_light_offset_ms", "online"}
    POST /api/devices/{id}/light_offset  {"light_offset_ms": 12.5}
         (null: stop keeping one; the device keeps what it holds) -> the same, and "sent"
    PUT  the same as POST
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gridcast.agent import playback
from gridcast.agent.store import DeviceRecord, StoreError
from gridcast.protocol import messages
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.api import Api
    from gridcast.agent.core import AgentCore

log = logging.getLogger("gridcast.light_offset")

RESEND_INTERVAL_S = 2.0  # at most one send per device this often (a device that refuses)
MAX_LIGHT_OFFSET_MS = messages.MAX_LIGHT_OFFSET_US / 1000


class LightOffsetKeeper:
    """Sends devices the light offset the registry keeps for them, when they hold another."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent_at: dict[str, float] = {}  # device -> monotonic time of the last send
        self._waiting: set[str] = set()  # devices with a re-check scheduled
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: list[tuple[str, int]] = []  # (device, offset µs) in the order sent

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.core.add_listener(self._on_event)
        for record in self.core.registry.snapshot():  # devices already known when we start
            self.check(record.id)

    def stop(self) -> None:
        self.core.remove_listener(self._on_event)
        for task in list(self._tasks):
            task.cancel()

    def _on_event(self, kind: str, data: dict) -> None:
        """A registry change, in the thread that observed it."""
        if kind == "device" and self._loop is not None:
            self._loop.call_soon_threadsafe(self.check, data["id"])

    def check(self, device_id: str) -> bool:
        """Send the kept offset to ``device_id`` if it holds another; True if sent now."""
        offset = self.core.registry.light_offset_to_send(device_id)
        if offset is None or self._loop is None:
            return False
        wait_s = self._sent_at.get(device_id, -1e9) + RESEND_INTERVAL_S - time.monotonic()
        if wait_s > 0:
            if device_id not in self._waiting:
                self._waiting.add(device_id)
                self._loop.call_later(wait_s, self._recheck, device_id)
            return False
        self._sent_at[device_id] = time.monotonic()
        task = self._loop.create_task(self._send(device_id, offset),
                                      name=f"light offset {device_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _recheck(self, device_id: str) -> None:
        self._waiting.discard(device_id)
        self.check(device_id)

    async def _send(self, device_id: str, offset_us: int) -> None:
        try:
            await playback.set_light_offset(self.core.transport_for(device_id), device_id,
                                            offset_us)
        except (GridcastError, OSError) as exc:
            log.warning("%s: light offset %d us not sent (%s); sent again when the device "
                        "reports", device_id, offset_us, exc)
            return
        self.sent.append((device_id, offset_us))
        log.info("%s: light offset %.3f ms sent", device_id, offset_us / 1000)


def _state(record: DeviceRecord) -> dict[str, Any]:
    def ms(us: int | None) -> float | None:
        return None if us is None else us / 1000

    return {"device": record.id, "light_offset_ms": ms(record.light_offset_us),
            "reported_light_offset_ms": ms(record.reported_light_offset_us),
            "online": record.online}


def register(app: web.Application, api: Api) -> LightOffsetKeeper:
    """Add the light offset routes and the keeper's start/stop to the API's app."""
    keeper = LightOffsetKeeper(api.core)

    def record_of(request: web.Request) -> DeviceRecord:
        device_id = api._known(request)
        found = {d.id: d for d in api.core.registry.snapshot()}.get(device_id)
        if found is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"unknown device {device_id!r}"}),
                                   content_type="application/json")
        return found

    async def get(request: web.Request) -> web.Response:
        return web.json_response(_state(record_of(request)))

    async def put(request: web.Request) -> web.Response:
        record = record_of(request)
        try:
            body = await request.json()
            value = body["light_offset_ms"]
            offset_us = None if value is None else round(float(value) * 1000)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            return web.json_response({"error": "body must be JSON: {\"light_offset_ms\": "
                                               "MS} (a number, or null to stop keeping one)"},
                                     status=400)
        if offset_us is not None and abs(offset_us) > messages.MAX_LIGHT_OFFSET_US:
            return web.json_response({"error": f"light_offset_ms {value}: at most "
                                               f"±{MAX_LIGHT_OFFSET_MS:g} ms"}, status=400)
        try:
            record = await asyncio.to_thread(api.core.registry.set_light_offset, record.id,
                                             offset_us)
        except StoreError as exc:
            return web.json_response({"error": f"not stored: {exc}"}, status=507)
        sent = keeper.check(record.id)
        return web.json_response({**_state(record), "sent": sent})

    async def on_startup(app: web.Application) -> None:
        keeper.start(asyncio.get_running_loop())

    async def on_shutdown(app: web.Application) -> None:
        keeper.stop()

    app.router.add_get("/api/devices/{id}/light_offset", get)
    app.router.add_post("/api/devices/{id}/light_offset", put)
    app.router.add_put("/api/devices/{id}/light_offset", put)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return keeper

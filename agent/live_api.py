"""Live mode in the daemon: ``/api/live`` starts, shows and stops it (docs/live.md).

    POST   /api/live  {"source": "input"|"link", "input": DEV, "rate": HZ,
                       "input_offset_ms": MS, "quantum": N, "coast_s": S,
                       "devices": [...] or "all"}      -> 201 with the state
    GET    /api/live                                    -> the state ({"running": false} when off)
    DELETE /api/live                                    -> 200; the devices get an empty list
    POST   /api/live/tempo  {"hint": BPM or null}       -> 200; follow hint / 1.3 .. x 1.3
    POST   /api/live/downbeat {"beats_per_bar": N, "at_us": T}  -> 200 with "downbeat_us":
                       the beat nearest T (default: when the request came) is the one

POST /api/live also takes "tempo_hint" and "bars" ("audio", the default: the bar is
found in the recent audio; "tracker": the C tracker's own guess). The two controls
are the operator's at a live show: the tempo octave the tracker picked, and where
the bar starts (both 409 when live mode is not running, 400 with one error line when
refused).

One live mode runs at a time (a second POST is 409 while one runs). It sends over
the agent's transport; while it runs, its status goes to the WebSocket every second
as ``{"type": "live", ...}``. A start that fails (no input device, Link not
installed) is one error line with status 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gridcast.agent.clock import now_us
from gridcast.agent.live_mode import LiveConfig, LiveMode
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.api import Api

log = logging.getLogger("gridcast.live")
STATUS_EVERY_S = 1.0


class LiveService:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.mode: LiveMode | None = None
        self.devices: list[str] | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def state(self) -> dict[str, Any]:
        if self.mode is None:
            return {"running": False}
        return {"running": self.running, "devices": self.devices or "all",
                **self.mode.status()}

    async def start(self, config: LiveConfig, devices: list[str] | None) -> None:
        mode = LiveMode(config)
        # Opening an input or joining Link blocks briefly (PortAudio, Link's threads).
        await asyncio.to_thread(mode.open)
        self.mode, self.devices, self._stop = mode, devices, asyncio.Event()
        self._task = asyncio.create_task(self._run(mode, self._stop))

    async def _run(self, mode: LiveMode, stop: asyncio.Event) -> None:
        runner = asyncio.create_task(mode.run(self.api.core.transport, self.devices, stop))
        try:
            while not runner.done():
                self.api._broadcast({"type": "live", **mode.status()})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(runner), STATUS_EVERY_S)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await runner
            self.api._broadcast({"type": "live", **mode.status(), "running": False})

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            await self._task


def _config(body: dict) -> tuple[LiveConfig, list[str] | None]:
    devices = body.get("devices", "all")
    if devices != "all" and not (isinstance(devices, list)
                                 and all(isinstance(d, str) for d in devices)):
        raise ValueError('"devices" must be a list of device ids or "all"')
    device = body.get("input")
    config = LiveConfig(source=str(body.get("source", "input")),
                        input_device=int(device) if isinstance(device, str) and device.isdigit()
                        else device,
                        rate=int(body["rate"]) if body.get("rate") else None,
                        input_offset_ms=float(body.get("input_offset_ms", 0.0)),
                        quantum=int(body.get("quantum", 4)),
                        coast_s=float(body.get("coast_s", 4.0)),
                        tempo_hint=_bpm(body.get("tempo_hint"), "tempo_hint"),
                        bars=str(body.get("bars", "audio")))
    return config, None if devices == "all" else devices


BAD_REQUEST = (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError)


async def _body(request: web.Request) -> dict:
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _refused(exc: Exception) -> web.Response:
    """400 with one line: a malformed request says so; a refusal says why."""
    text = f"bad live mode request: {exc}" if isinstance(exc, BAD_REQUEST) else str(exc)
    return web.json_response({"error": text}, status=400)


def _bpm(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'"{name}" must be a tempo in BPM or null')
    return float(value)


def register(app: web.Application, api: Api) -> LiveService:
    """Add /api/live to the API's app; live mode stops with the daemon."""
    service = LiveService(api)

    async def get(request: web.Request) -> web.Response:
        return web.json_response(service.state())

    async def post(request: web.Request) -> web.Response:
        if service.running:
            return web.json_response({"error": "live mode is already running: DELETE "
                                               "/api/live first", **service.state()}, status=409)
        try:
            config, devices = _config(await _body(request))
            await service.start(config, devices)
        except (*BAD_REQUEST, GridcastError) as exc:
            return _refused(exc)
        log.info("live mode started (%s)", config.source)
        return web.json_response(service.state(), status=201)

    async def delete(request: web.Request) -> web.Response:
        await service.stop()
        return web.json_response(service.state())

    async def control(request: web.Request, act) -> web.Response:
        """Run one operator control on the running live mode: 409 when none runs."""
        if not service.running or service.mode is None:
            return web.json_response({"error": "live mode is not running: POST /api/live "
                                               "first", **service.state()}, status=409)
        try:
            extra = act(service.mode, await _body(request))
        except (*BAD_REQUEST, GridcastError) as exc:
            return _refused(exc)
        state = service.state()
        api._broadcast({"type": "live", **state})
        return web.json_response({**state, **extra})

    def set_tempo(mode: LiveMode, body: dict) -> dict:
        if "hint" not in body:
            raise ValueError('give "hint": a tempo in BPM, or null to follow any tempo')
        mode.set_tempo_hint(_bpm(body["hint"], "hint"))
        return {}

    def set_downbeat(mode: LiveMode, body: dict) -> dict:
        at_us, bpb = body.get("at_us", now_us()), body.get("beats_per_bar")
        if isinstance(at_us, bool) or not isinstance(at_us, int):
            raise ValueError('"at_us" must be a time on the agent\'s timeline (µs)')
        if bpb is not None and (isinstance(bpb, bool) or not isinstance(bpb, int)):
            raise ValueError('"beats_per_bar" must be a whole number')
        return {"downbeat_us": mode.set_downbeat(at_us, bpb)}

    async def post_tempo(request: web.Request) -> web.Response:
        return await control(request, set_tempo)

    async def post_downbeat(request: web.Request) -> web.Response:
        return await control(request, set_downbeat)

    async def on_shutdown(app: web.Application) -> None:
        await service.stop()

    app.router.add_get("/api/live", get)
    app.router.add_post("/api/live", post)
    app.router.add_delete("/api/live", delete)
    app.router.add_post("/api/live/tempo", post_tempo)
    app.router.add_post("/api/live/downbeat", post_downbeat)
    app.on_shutdown.append(on_shutdown)
    return service

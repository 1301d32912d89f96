"""The daemon's show player over HTTP and WebSocket (registered from agent/api.py).

One ShowPlayer (agent/show/player.py) per daemon, made when first used: its sound goes
to the config's ``audio_output`` (default: the system's output) with the config's
``room_latency_ms`` (``gridcast calibrate`` measures it); its lights go to every device
the registry knows (devices it learns of later are added before each transport
command; an offline one joins at the current position when it says hello).

    GET  /api/player                  the state: state, index, position_s, track, tracks,
                                      duration_s, next_beat, skipped, drift_ppm, ...
    GET  /api/player/waveform?index=N the track's peaks (WAVEFORM_POINTS, 0..1) and beats
    POST /api/player/queue            {"paths": [audio, folder or M3U, ...], "replace": false}
                                      (analyzed and bundled in the background: 202)
    POST /api/player/play             {"index": N, "position_s": S} (both optional; a paused
                                      player resumes)
    POST /api/player/pause | resume | stop | next | previous
    POST /api/player/seek             {"position_s": S}

The set list survives a restart: what was queued (the paths as given) and the current
track are kept in ``<bundle_dir>/set_list.json`` (written atomically on every change)
and queued again when the daemon starts, stopped at that track: a restarted daemon
never starts sound on its own. A file it cannot read is logged with the reason and
left as it is.

Every write needs the token (agent/api.py). The WebSocket (/ws) carries the player's
events as ``{"type": "player", "event": KIND, ...}``: state, now_playing, position
(twice a second), next_beat, queue, skipped, ended, and queue_failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from gridcast.host.atomic_file import write_atomically
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.api import Api
    from gridcast.agent.show.output import ShowOutput
    from gridcast.agent.show.player import ShowPlayer
    from gridcast.agent.show.set_list import ShowTrack

log = logging.getLogger("gridcast.player_api")

WAVEFORM_POINTS = 800  # peaks per track for the dashboard's picture
SET_LIST_FILE = "set_list.json"  # in the config's bundle_dir
TracksFrom = Callable[[list[str]], list["ShowTrack"]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class PlayerService:
    """The daemon's player, its latest events, and the routes that drive it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.core = api.core
        self.player: ShowPlayer | None = None
        self.output: ShowOutput | None = None
        # Audio paths -> ShowTracks. The agent does not analyze audio itself: this calls
        # the host's set list code (as `gridcast play` does); tests replace it.
        self.tracks_from_paths: TracksFrom = self._analyze
        self.next_beat: dict[str, Any] | None = None
        self.durations: dict[int, float] = {}
        self._waveforms: dict[tuple[str, str], dict[str, Any]] = {}
        self._failed_lines: list[str] = []  # files the last queue could not analyze
        self._lock = asyncio.Lock()
        self.inputs: list[str] = []  # what was queued, as given (kept in SET_LIST_FILE)
        self.set_list_path = os.path.join(self.core.config.bundle_dir, SET_LIST_FILE)

    # -- the player ----------------------------------------------------------------------
    def _ensure(self) -> ShowPlayer:
        if self.player is None:
            from gridcast.agent.show.output import ShowOutput
            from gridcast.agent.show.player import ShowPlayer

            config = self.core.config
            device: int | str | None = config.audio_output
            if isinstance(device, str) and device.isdigit():  # an index, from TOML or env
                device = int(device)
            output = ShowOutput(device, room_latency_ms=config.room_latency_ms)
            output.open()
            self.output = output
            ids = [d.id for d in self.core.registry.snapshot()]
            self.player = ShowPlayer(self.core.transport, ids, output, on_event=self._on_event)
        return self.player

    def _add_new_devices(self, player: ShowPlayer) -> None:
        for record in self.core.registry.snapshot():
            if record.id not in player.device_ids:
                player.device_ids.append(record.id)
                player.lights.device_ids.append(record.id)

    def _on_event(self, kind: str, data: dict) -> None:
        if kind == "next_beat":
            self.next_beat = data
        elif kind == "now_playing":
            self.next_beat = None  # the last track's
            if data.get("duration_s") is not None:
                self.durations[int(data["index"])] = float(data["duration_s"])
            self._save_set_list()
        if self.api.sockets:
            self.api._broadcast({"type": "player", "event": kind, **data})

    def state(self) -> dict[str, Any]:
        config = self.core.config
        # The output's own figure once it exists: what is really added to the DAC times.
        room_ms = (self.output.room_latency_us / 1e3 if self.output is not None
                   else config.room_latency_ms)
        base = {"output": config.audio_output, "room_latency_ms": room_ms}
        if self.player is None:
            return {**base, "state": "stopped", "index": 0, "position_s": 0.0, "track": None,
                    "tracks": [], "skipped": [], "duration_s": None, "next_beat": None}
        snapshot = self.player.snapshot()
        return {**base, **snapshot, "position_s": round(snapshot["position_s"], 3),
                "duration_s": self.durations.get(self.player.index),
                "next_beat": self.next_beat if snapshot["state"] == "playing" else None}

    async def close(self) -> None:
        if self.player is not None:
            await self.player.close()
        if self.output is not None:
            self.output.close()

    # -- set lists -----------------------------------------------------------------------
    def _analyze(self, paths: list[str]) -> list[ShowTrack]:
        from gridcast.host.library.set_list import audio_paths, show_tracks
        from gridcast.protocol import keys

        config = self.core.config
        if not config.key_file:
            raise GridcastError("the agent has no key_file configured, so it cannot sign "
                                "the tracks' bundles; set key_file in the config")
        maps = os.path.join(config.bundle_dir, "maps")
        failed: list[str] = []

        def line(text: str) -> None:
            log.info("%s", text)
            if text.startswith("gridcast: "):  # a file that could not be analyzed
                failed.append(text.removeprefix("gridcast: "))

        files = audio_paths(paths)
        tracks = show_tracks(files, keys.load(config.key_file), maps, on_line=line)
        if not tracks:
            raise GridcastError(f"none of the {len(files)} files could be analyzed: "
                                + ("; ".join(failed) or "no beat maps"))
        self._failed_lines = failed
        return tracks

    def _save_set_list(self) -> None:
        """Write the queued inputs and the current track (temporary file + rename)."""
        index = self.player.index if self.player is not None else 0
        data = {"inputs": self.inputs, "index": index}
        try:
            write_atomically(self.set_list_path, json.dumps(data, indent=1))
        except OSError as exc:  # the show goes on; the next restart starts empty
            log.error("%s: cannot save the set list (%s)", self.set_list_path, exc)

    def _read_set_list(self) -> tuple[list[str], int] | None:
        """The saved inputs and track index; None when there are none or the file is bad
        (logged, and left in place for a person to look at)."""
        if not os.path.exists(self.set_list_path):
            return None
        try:
            with open(self.set_list_path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            log.error("%s: cannot read the saved set list (%s); starting with an empty one "
                      "(the file is left as it is)", self.set_list_path, exc)
            return None
        inputs, index = (data.get("inputs"), data.get("index", 0)) if isinstance(data, dict) \
            else (None, None)
        if not (isinstance(inputs, list) and all(isinstance(p, str) for p in inputs)
                and isinstance(index, int) and not isinstance(index, bool)):
            log.error("%s: not a saved set list (expected {\"inputs\": [paths], \"index\": "
                      "N}); starting with an empty one (the file is left as it is)",
                      self.set_list_path)
            return None
        return inputs, index

    async def restore(self) -> None:
        """Queue the saved set list again, stopped at its saved track."""
        saved = self._read_set_list()
        if not saved or not saved[0]:
            return
        inputs, index = saved
        await self._queue(inputs, replace=True)
        if self.player is not None and self.player.tracks:
            self.player.index = min(max(index, 0), len(self.player.tracks) - 1)
            self._save_set_list()
            log.info("set list restored from %s: %d tracks, at track %d (stopped)",
                     self.set_list_path, len(self.player.tracks), self.player.index + 1)

    async def _queue(self, paths: list[str], replace: bool) -> None:
        self._failed_lines = []
        try:
            tracks = await asyncio.to_thread(self.tracks_from_paths, paths)
            async with self._lock:
                player = self._ensure()
                if replace:
                    await player.stop()
                    self.durations.clear()
                player.queue(tracks, replace=replace)
                self.inputs = list(paths) if replace else self.inputs + list(paths)
                self._save_set_list()
        except (GridcastError, OSError) as exc:
            log.error("queue %s: %s", ", ".join(paths), exc)
            self._on_event("queue_failed", {"paths": paths, "reason": str(exc)})
            return
        for reason in self._failed_lines:  # the others were queued; the show goes on
            self._on_event("queue_failed", {"paths": paths, "reason": reason})

    async def waveform(self, index: int) -> dict[str, Any]:
        """Peaks (|x| max per column, 0..1 of the loudest) and beat times of track ``index``."""
        assert self.player is not None
        track = self.player.tracks[index]
        key = (track.track_id, track.title)
        if key not in self._waveforms:
            samples, rate = await asyncio.to_thread(track.load)
            self._waveforms[key] = await asyncio.to_thread(_peaks, samples, rate)
        return {"index": index, "title": track.title, "track_id": track.track_id,
                **self._waveforms[key], "beats_s": [round(b, 4) for b in track.beats_s]}


def _peaks(samples: np.ndarray, rate: float) -> dict[str, Any]:
    data = np.abs(np.asarray(samples, dtype=np.float32))
    mono = data.max(axis=1) if data.ndim == 2 else data
    columns = np.array_split(mono, min(WAVEFORM_POINTS, max(1, mono.size)))
    peaks = np.array([c.max() if c.size else 0.0 for c in columns])
    top = float(peaks.max()) or 1.0
    return {"duration_s": round(mono.size / rate, 3),
            "peaks": [round(float(p) / top, 3) for p in peaks]}


def _plain(name: str) -> Callable[[ShowPlayer, dict[str, Any]], Awaitable[None]]:
    """A command without arguments: ``player.<name>()``."""
    async def run(player: ShowPlayer, data: dict[str, Any]) -> None:
        await getattr(player, name)()
    return run


def register(app: web.Application, api: Api) -> PlayerService:
    """Add /api/player and its commands to the API's app; returns the service."""
    service = PlayerService(api)

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}),
                                     content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                     content_type="application/json")
        return data

    def number(data: dict[str, Any], name: str, default: float | None) -> float | None:
        value = data.get(name, default)
        if value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text=json.dumps({"error": f"{name}={value!r}: expected a "
                                                               "number"}),
                                     content_type="application/json") from None

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(service.state())

    async def get_waveform(request: web.Request) -> web.Response:
        player = service.player
        if player is None or not player.tracks:
            return _error(404, "the set list is empty")
        try:
            index = int(request.query.get("index", player.index))
        except ValueError:
            return _error(400, "index must be an integer")
        if not 0 <= index < len(player.tracks):
            return _error(404, f"no track {index} (the set list has {len(player.tracks)})")
        try:
            return web.json_response(await service.waveform(index))
        except Exception as exc:  # a track that cannot be decoded: say which
            return _error(422, f"{player.tracks[index].title}: cannot draw it ({exc})")

    async def queue(request: web.Request) -> web.Response:
        data = await body(request)
        paths = data.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str)
                                                                for p in paths):
            return _error(400, "give {\"paths\": [audio files, folders or M3U lists]}")
        if service.tracks_from_paths == service._analyze and not api.core.config.key_file:
            return _error(409, "the agent has no key_file configured, so it cannot sign the "
                               "tracks' bundles; set key_file in the config")
        api._spawn(service._queue(paths, bool(data.get("replace", False))))
        return web.json_response({"accepted": paths}, status=202)

    def command(run: Callable[[ShowPlayer, dict[str, Any]], Awaitable[None]]
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            data = await body(request)
            async with service._lock:
                try:
                    player = service._ensure()
                except GridcastError as exc:  # no output device: the message lists them
                    return _error(503, str(exc))
                if not player.tracks:
                    return _error(409, "the set list is empty: POST /api/player/queue first")
                service._add_new_devices(player)
            await run(player, data)
            return web.json_response(service.state())
        return handler

    async def play(player: ShowPlayer, data: dict[str, Any]) -> None:
        index = number(data, "index", None)
        position = number(data, "position_s", 0.0) or 0.0
        if index is None and player.state == "paused" and "position_s" not in data:
            await player.resume()
        else:
            chosen = player.index if index is None else int(index)
            await player.play(min(max(chosen, 0), len(player.tracks) - 1), position)

    async def seek(player: ShowPlayer, data: dict[str, Any]) -> None:
        position = number(data, "position_s", None)
        if position is None:
            raise web.HTTPBadRequest(text=json.dumps({"error": "give {\"position_s\": S}"}),
                                     content_type="application/json")
        await player.seek(position)

    async def on_shutdown(app: web.Application) -> None:
        await service.close()

    async def on_startup(app: web.Application) -> None:
        api._spawn(service.restore())

    r = app.router
    r.add_get("/api/player", get_state)
    r.add_get("/api/player/waveform", get_waveform)
    r.add_post("/api/player/queue", queue)
    r.add_post("/api/player/play", command(play))
    r.add_post("/api/player/seek", command(seek))
    for name in ("pause", "resume", "stop", "next", "previous"):
        r.add_post(f"/api/player/{name}", command(_plain(name)))
    app.on_shutdown.append(on_shutdown)
    app.on_startup.append(on_startup)
    return service

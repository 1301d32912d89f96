"""The beat-grid editor's API and page (registered from agent/api.py).

The maps are the ``*.beatmap.json`` / ``*.beatmap.msgpack`` files in the config's
``maps_dir`` and in the player's set-list folder (``<bundle_dir>/maps``); a map is
named by its file name. Every edit is a new version of the file, made by
host/beatmaps/corrections.py: the previous file is kept as ``<name>.v<N>.json`` and
the history entry says what changed, who (the API token's name) and when.

    GET  /editor                     the editor page (agent/dashboard/editor.html)
    GET  /api/maps                   [{name, folder, version, tempo_bpm, modified_s}, ...]
    GET  /api/maps/{name}            the map, compact for drawing: beats, beat_in_bar,
                                     envelopes (base64 of uint8, 0..255), phrases,
                                     sections, cues, history, undo_to
    GET  /api/maps/{name}/peaks      the audio's peaks (PEAKS_PER_S a second, base64 uint8)
                                     when the agent has the file (beside the map or in
                                     the player's set list); 404 otherwise
    GET  /api/maps/{name}/audio      the audio file itself when it lies beside the map
                                     (Range requests: the page plays and seeks it)
    POST /api/maps/{name}/edit       {"op": OP, "base_version": N, ...}; OP is one of
                                     move_beat {index, to_s}, delete_beat {at_s},
                                     add_beat {at_s}, shift {offset_ms},
                                     downbeat {at_s, meter?}, tempo {bpm, anchor_s},
                                     split_section {at_s}, merge_sections {index},
                                     section_role {index, role}
    POST /api/maps/{name}/undo       {"base_version": N}: a new version equal to the one
                                     before the last edit not yet undone
    POST /api/maps/{name}/deploy     {"devices": [...] or "all", "canary", "soak_s",
                                     "max_drift_ms", "force", "wait"}: bundle with the
                                     agent's key, keep it, run the deployment service

Each saved version is announced on the WebSocket (/ws) as ``{"type": "map", "name",
"version", "change", "by"}``, so other open editors load it. A write on a stale page
(``base_version`` is not the file's version) is refused with 409; an edit the map
cannot take (beats out of order, no such section) with 422, and the file is left as it
was.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from gridcast.agent.deployment import BundleRef, PlanError
from gridcast.host.atomic_file import write_atomically
from gridcast.host.errors import BeatMapError
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.api import Api
    from gridcast.host.beatmaps.beatmap import BeatMap

EDITOR_PAGE = os.path.join(os.path.dirname(__file__), "dashboard", "editor.html")
MAP_SUFFIXES = (".beatmap.json", ".beatmap.msgpack")
HEAD_FIELDS = re.compile(r'"(version|tempo_bpm)":\s*([0-9.]+)')  # indented or compact JSON
PEAKS_PER_S = 100  # audio peaks a second for the waveform (the envelopes have 50)
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
               ".oga": "audio/ogg", ".mp3": "audio/mpeg", ".aif": "audio/aiff",
               ".aiff": "audio/aiff"}
HISTORY_SHOWN = 50  # newest history entries sent to the page
Op = Callable[["BeatMap", dict[str, Any]], tuple["BeatMap", dict[str, Any]]]


class EditRefused(GridcastError):
    """A request the editor cannot carry out; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _u8(values: np.ndarray) -> str:
    """0..1 floats as base64 of uint8 (0..255): a 10-minute band is 40 kB, not 200."""
    q = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)) * 255 + 0.5, 0, 255)
    return base64.b64encode(q.astype(np.uint8).tobytes()).decode()


def token_name(api: Api, request: web.Request) -> str:
    """Who made a change: the name of the API token the request carried (``default`` for
    the config's ``token``, else its name in ``api_tokens``; agent/rate_limit.py)."""
    given = request.headers.get("Authorization", "")
    supplied = given[7:] if given.startswith("Bearer ") else request.query.get("token", "")
    return api.rate_limit.token_name(supplied) or "anonymous"


def _number(body: dict[str, Any], key: str, kind: type = float) -> Any:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise EditRefused(f"`{key}` must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise EditRefused(f"`{key}` must be a whole number, got {value!r}")
    return kind(value)


def _ops() -> dict[str, Op]:
    """Each edit: (map, request body) -> (new map, what is recorded in the history)."""
    from gridcast.host.beatmaps import corrections as c

    def move(bm: BeatMap, b: dict[str, Any]) -> tuple[BeatMap, dict[str, Any]]:
        i, to = _number(b, "index", int), _number(b, "to_s")
        old = float(bm.beats[i]) if 0 <= i < len(bm.beats) else None
        return c.move_beat(bm, i, to), {"move_beat": i, "from_s": old, "to_s": round(to, 4)}

    def meter(b: dict[str, Any]) -> int | None:
        return None if b.get("meter") is None else _number(b, "meter", int)

    return {
        "move_beat": move,
        "delete_beat": lambda bm, b: (c.apply(bm, c.Corrections(
            delete_beats=(_number(b, "at_s"),), source="delete")),
            {"delete_beats": [round(_number(b, "at_s"), 4)]}),
        "add_beat": lambda bm, b: (c.apply(bm, c.Corrections(add_beats=(_number(b, "at_s"),))),
                                   {"add_beats": [round(_number(b, "at_s"), 4)]}),
        "shift": lambda bm, b: (c.shift_grid(bm, _number(b, "offset_ms")),
                                {"offset_ms": round(_number(b, "offset_ms"), 3)}),
        "downbeat": lambda bm, b: (c.set_downbeat(bm, _number(b, "at_s"), meter(b)),
                                   {"downbeat_at": round(_number(b, "at_s"), 4),
                                    **({"meter": meter(b)} if meter(b) else {})}),
        "tempo": lambda bm, b: (c.regrid(bm, _number(b, "bpm"), _number(b, "anchor_s")),
                                {"tempo_bpm": round(_number(b, "bpm"), 3),
                                 "anchor_s": round(_number(b, "anchor_s"), 4)}),
        "split_section": lambda bm, b: (c.split_section(bm, _number(b, "at_s")),
                                        {"split_section_at": round(_number(b, "at_s"), 4)}),
        "merge_sections": lambda bm, b: (c.merge_sections(bm, _number(b, "index", int)),
                                         {"merge_sections": _number(b, "index", int)}),
        "section_role": lambda bm, b: (c.set_section_role(bm, _number(b, "index", int),
                                                          str(b.get("role"))),
                                       {"section": _number(b, "index", int),
                                        "role": b.get("role")}),
    }


class MapService:
    """The maps the daemon knows, read and cached, and the edits that make new versions."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.config = api.core.config
        self._cache: dict[str, tuple[tuple[int, int], BeatMap]] = {}
        self._peaks: dict[tuple[str, str], dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- finding and reading -------------------------------------------------------------
    def folders(self) -> list[str]:
        found = [self.config.maps_dir] if self.config.maps_dir else []
        found.append(os.path.join(self.config.bundle_dir, "maps"))
        return [f for f in found if os.path.isdir(f)]

    def paths(self) -> dict[str, str]:
        """Map name (its file name) -> path; the first folder wins a name in two."""
        out: dict[str, str] = {}
        for folder in self.folders():
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                # kept versions (song.beatmap.v3.json) do not end with a map suffix
                if (entry.name.endswith(MAP_SUFFIXES) and not entry.name.startswith(".")
                        and entry.is_file()):
                    out.setdefault(entry.name, entry.path)
        return out

    def path(self, name: str) -> str:
        found = self.paths().get(name)
        if found is None:
            where = ", ".join(self.folders()) or "no folder"
            raise EditRefused(f"no beat map {name!r} in {where} (set maps_dir in the agent's "
                              "config)", 404)
        return found

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for name, path in self.paths().items():
            st = os.stat(path)
            row: dict[str, Any] = {"name": name, "folder": os.path.dirname(path),
                                   "modified_s": round(st.st_mtime, 3), "size": st.st_size}
            if path.endswith(".json"):  # the file's head says version and tempo: no parse
                with open(path, "rb") as f:
                    head = f.read(200).decode("utf-8", "replace")
                row.update({k: float(v) if k == "tempo_bpm" else int(v)
                            for k, v in HEAD_FIELDS.findall(head)})
            rows.append(row)
        return rows

    def load(self, path: str) -> BeatMap:
        """The map at ``path``, parsed once per change of the file."""
        from gridcast.host.beatmaps import beatmap

        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, beatmap.load(path))
            self._cache[path] = cached
        return cached[1]

    def _remember(self, path: str, bm: BeatMap) -> BeatMap:
        """The map just written, so the next edit need not parse the file again."""
        st = os.stat(path)
        self._cache[path] = ((st.st_mtime_ns, st.st_size), bm)
        return bm

    def compact(self, name: str, bm: BeatMap, envelopes: bool = True) -> dict[str, Any]:
        from gridcast.host.beatmaps import corrections
        from gridcast.host.beatmaps.beatmap import SECTION_ROLES

        try:
            undo_to: int | None = corrections.undo_target(bm)
        except GridcastError:
            undo_to = None
        out = {"name": name, "version": bm.version, "tempo_bpm": round(bm.tempo_bpm, 3),
               "meter": bm.meter, "audio_file": bm.metadata.get("audio_file", ""),
               "duration_s": max(bm.duration_s, float(bm.beats[-1]) if len(bm.beats) else 0),
               "beats": [round(float(t), 4) for t in bm.beats],
               "beat_in_bar": [int(b) for b in bm.beat_in_bar],
               "phrases": [round(float(t), 4) for t in bm.phrases],
               "sections": [s.to_dict() for s in bm.sections],
               "cues": [c.to_dict() for c in bm.cues], "roles": list(SECTION_ROLES),
               "history": bm.history[-HISTORY_SHOWN:], "warnings": bm.warnings,
               "undo_to": undo_to}
        if envelopes:
            out["envelope_rate_hz"] = bm.envelope_rate_hz
            out["envelopes"] = {k: _u8(v) for k, v in bm.envelopes.items()}
        return out

    def peaks(self, name: str) -> dict[str, Any]:
        """|sample| maxima, PEAKS_PER_S a second, scaled to the loudest; EditRefused 404
        when the agent does not have the audio (beside the map, or in the player's list)."""
        import soundfile as sf

        bm = self.load(self.path(name))
        audio_name = str(bm.metadata.get("audio_file", ""))
        key = (name, str(bm.metadata.get("audio_sha256", "")))
        if key in self._peaks:
            return self._peaks[key]
        beside = self.audio_path(name)
        player = self.api.player.player
        track = next((t for t in (player.tracks if player is not None else [])
                      if t.title == audio_name), None)
        if beside is not None:
            samples, rate = sf.read(beside, dtype="float32", always_2d=True)
        elif audio_name and track is not None:
            samples, rate = track.load()
        else:
            raise EditRefused(f"{name}: the agent does not have its audio "
                              f"({audio_name or 'no audio_file in the map'})", 404)
        data = np.abs(np.asarray(samples, dtype=np.float32))
        mono = data.max(axis=1) if data.ndim == 2 else data
        step = max(1, int(rate // PEAKS_PER_S))
        cols = mono[: len(mono) // step * step].reshape(-1, step).max(axis=1)
        top = float(cols.max()) if cols.size else 0.0
        self._peaks[key] = {"name": name, "rate_hz": rate / step,
                            "peaks": _u8(cols / (top or 1.0)), "audio": beside is not None}
        return self._peaks[key]

    def audio_path(self, name: str) -> str | None:
        """The map's audio file when it lies beside the map (the page can play it)."""
        path = self.path(name)
        audio_name = os.path.basename(str(self.load(path).metadata.get("audio_file", "")))
        beside = os.path.join(os.path.dirname(path), audio_name)
        return beside if audio_name and os.path.isfile(beside) else None

    # -- writing ---------------------------------------------------------------------------
    def _lock(self, path: str) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    def _current(self, path: str, body: dict[str, Any]) -> BeatMap:
        bm = self.load(path)
        base = body.get("base_version")
        if base is not None and base != bm.version:
            raise EditRefused(f"{os.path.basename(path)} is at version {bm.version}, the page "
                              f"edits version {base}: someone else changed it; reload", 409)
        return bm

    def edit(self, name: str, body: dict[str, Any], by: str) -> dict[str, Any]:
        """One edit as a new version (refused edits raise; the file stays as it was)."""
        from gridcast.host.beatmaps import corrections

        ops = _ops()
        op = body.get("op")
        if op not in ops:
            raise EditRefused(f"op {op!r}: use one of {', '.join(ops)}")
        path = self.path(name)
        current = self._current(path, body)
        try:
            edited, edits = ops[str(op)](current, body)
            saved = corrections.save_version(path, current, edited, "edit", edits, by)
        except EditRefused:  # a malformed request (400), not an edit the map refuses
            raise
        except GridcastError as exc:
            raise EditRefused(f"{name} v{current.version}: {exc}; the map is unchanged",
                              422) from exc
        self._remember(path, saved)
        return self.compact(name, saved, envelopes=False)

    def undo(self, name: str, body: dict[str, Any], by: str) -> dict[str, Any]:
        from gridcast.host.beatmaps import corrections

        path = self.path(name)
        current = self._current(path, body)
        try:
            saved = self._remember(path, corrections.undo(path, current, by))
        except GridcastError as exc:
            raise EditRefused(str(exc), 409) from exc
        return self.compact(name, saved, envelopes=False)

    def bundle(self, name: str) -> tuple[BundleRef, bytes]:
        """The map signed into a bundle with the agent's key, kept like an uploaded one."""
        from gridcast.host.beatmaps import bundling
        from gridcast.protocol import bundle_builder, keys

        key = self.api.key
        if key is None:
            raise EditRefused("this agent has no key_file configured, so it cannot sign "
                              "bundles; set key_file in the config", 409)
        source = bundling.source_from_map(self.load(self.path(name)))
        data = bundle_builder.build(source, key, keys.key_id(key))
        sha = hashlib.sha256(data).hexdigest()
        folder = self.config.bundle_dir
        path = os.path.join(folder, f"{sha}.gcb")
        write_atomically(path, data)
        self.api.core.store.add_bundle(sha, source.track_id, source.bundle_version, len(data),
                                       path)
        return BundleRef(sha, source.track_id, source.bundle_version), data


def register(app: web.Application, api: Api) -> MapService:
    """Add /editor and /api/maps to the API's app; returns the service."""
    service = MapService(api)

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EditRefused("body must be JSON") from None
        if not isinstance(data, dict):
            raise EditRefused("body must be a JSON object")
        return data

    def route(run: Callable[[web.Request], Awaitable[Any]], status: int = 200
              ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                result = await run(request)
            except EditRefused as exc:
                return _error(exc.status, str(exc))
            except PlanError as exc:
                return _error(exc.status, str(exc))
            except BeatMapError as exc:  # a map file that does not parse: the place in it
                return _error(422, str(exc))
            except (GridcastError, OSError) as exc:
                return _error(500, f"{request.match_info.get('name', '')}: {exc}")
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result, status=status)
        return handler

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(EDITOR_PAGE)

    async def listing(request: web.Request) -> list[dict[str, Any]]:
        return await asyncio.to_thread(service.listing)

    async def one(request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        bm = await asyncio.to_thread(lambda: service.load(service.path(name)))
        return await asyncio.to_thread(service.compact, name, bm)

    async def peaks(request: web.Request) -> dict[str, Any]:
        return await asyncio.to_thread(service.peaks, request.match_info["name"])

    async def audio(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        found = await asyncio.to_thread(service.audio_path, name)
        if found is None:
            raise EditRefused(f"{name}: its audio is not beside the map", 404)
        kind = AUDIO_TYPES.get(os.path.splitext(found)[1].lower(), "application/octet-stream")
        return web.FileResponse(found, headers={"Content-Type": kind})  # Range: <audio> seeks

    def write(action: Callable[[str, dict[str, Any], str], dict[str, Any]]
              ) -> Callable[[web.Request], Awaitable[dict[str, Any]]]:
        async def run(request: web.Request) -> dict[str, Any]:
            name, data = request.match_info["name"], await body(request)
            path = await asyncio.to_thread(service.path, name)
            async with service._lock(path):  # one edit of a map at a time
                saved = await asyncio.to_thread(action, name, data, token_name(api, request))
            if api.sockets:  # other open editors follow (their next write would be stale)
                entry = saved["history"][-1] if saved["history"] else {}
                api._broadcast({"type": "map", "name": name, "version": saved["version"],
                                "change": entry.get("change"), "by": entry.get("by")})
            return saved
        return run

    async def deploy(request: web.Request) -> web.Response:
        name, data = request.match_info["name"], await body(request)
        started = time.monotonic()
        ref, bundle = await asyncio.to_thread(service.bundle, name)
        try:
            dep = api.deployments.plan(
                ref, data.get("devices", "all"), canary=int(data.get("canary", 0)),
                max_drift_ms=float(data.get("max_drift_ms",
                                            api.core.config.alert_threshold_ms)),
                soak_s=float(data.get("soak_s", 0)), force=bool(data.get("force", False)))
        except (TypeError, ValueError) as exc:
            raise EditRefused(f"canary, max_drift_ms and soak_s must be numbers ({exc})") \
                from None
        task = api._spawn(api.deployments.run(dep, bundle))
        if data.get("wait"):
            await task
            return web.json_response({**dep.to_dict(), "bundle_sha256": ref.sha256,
                                      "total_s": round(time.monotonic() - started, 3)})
        return web.json_response({"id": dep.id, "state": dep.state, "devices": dep.devices,
                                  "bundle_sha256": ref.sha256,
                                  "bundle_version": ref.bundle_version}, status=202)

    r = app.router
    r.add_get("/editor", route(page))
    r.add_get("/api/maps", route(listing))
    r.add_get("/api/maps/{name}", route(one))
    r.add_get("/api/maps/{name}/peaks", route(peaks))
    r.add_get("/api/maps/{name}/audio", route(audio))
    r.add_post("/api/maps/{name}/edit", route(write(service.edit)))
    r.add_post("/api/maps/{name}/undo", route(write(service.undo)))
    r.add_post("/api/maps/{name}/deploy", route(deploy))
    return service

"""The show player: a set list played as sound and lights on the agent's clock.

Sound: ``ShowOutput`` plays the samples bit-exact; where each one is heard comes from
PortAudio's DAC times through the DacClock line (drift included) plus the room
latency. Lights: the devices play the track's bundle on a timeline whose map time 0 is
the agent instant at which position 0 is heard, and ``LightTimeline.steer`` keeps that
timeline on the sound every ``STEER_S`` with rate messages (lights.py says why rate).

Set lists are gapless: when the playing track has ``PREPARE_AHEAD_S`` left, the next
one is decoded and resampled in a worker thread and queued on the output to start on
the frame after the last sample; its bundle is transferred meanwhile and activated with
the boundary's heard time as the hand-over instant (gate.py): the devices fire the old
map right up to the boundary sample and the new one from it, whose timeline puts its
map time 0 on that sample. Devices older than protocol 4 end the old bundle's lights
when they activate the new one: theirs is activated just after the old track's last
beat, at most ``SWITCH_MAX_S`` and at least ``SWITCH_MIN_S`` before the boundary. A
track that cannot be decoded is skipped with one log line (and a ``skipped`` event);
the show goes on.

Transport: ``pause``/``resume``, ``seek``, ``next``/``previous`` restart sound and
lights together ``START_LEAD_S`` ahead (the deploy of a track the devices lack comes
first). A show device that says hello again (it was offline, or rebooted) gets the
playing bundle and joins at the current position.

Events (``on_event(kind, data)``, from the asyncio loop): ``state``, ``now_playing``,
``position`` (every ``POSITION_EVERY_S``), ``next_beat``, ``skipped``, ``ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gridcast.agent import deploy, presence
from gridcast.agent.audio.output import PreparedAudio
from gridcast.agent.clock import now_us
from gridcast.agent.show.gate import GatedActivation
from gridcast.agent.show.lights import LightTimeline
from gridcast.agent.show.output import ShowOutput
from gridcast.agent.show.set_list import ShowTrack
from gridcast.agent.transport import Transport

log = logging.getLogger("gridcast.show")

TICK_S = 0.25
STEER_S = 2.0
POSITION_EVERY_S = 0.5
START_LEAD_S = 0.25  # from a transport command to the sound (and the lights) starting
PREPARE_AHEAD_S = 30.0  # decode, resample and transfer the next track this long ahead
# Devices before protocol 4 (no hand-over): the next bundle is activated at least
# SWITCH_MIN_S before the boundary and at most SWITCH_MAX_S (after the old track's last beat).
SWITCH_MIN_S = 0.25
SWITCH_MAX_S = 3.0
RESTART_WITHIN_S = 3.0  # previous(): later than this into a track, restart it instead
Event = Callable[[str, dict], None]


class ShowPlayer:
    """Plays ShowTracks on ``output`` with lights on ``device_ids`` over ``transport``."""

    def __init__(self, transport: Transport, device_ids: list[str], output: ShowOutput,
                 on_event: Event | None = None) -> None:
        self.transport = transport
        self.device_ids = list(device_ids)
        self.output = output
        self.on_event = on_event
        self.lights = LightTimeline(transport, device_ids)
        self.tracks: list[ShowTrack] = []
        self.index = 0  # the current track
        self.state = "stopped"  # stopped | playing | paused
        self.skipped: list[str] = []
        self.switches = 0
        self.switch_heard_us: list[float] = []  # when each gapless switch was heard
        self.transfers = 0  # deploys that gave a device the bundle (a transfer, or none needed)
        self.rollbacks = 0  # devices that went back to the bundle before (no transfer)
        # device -> the bundle its store keeps as the previous one, as far as this player
        # made it so (a deploy moves the active bundle there); a rollback restores it
        self._previous: dict[str, tuple[str, int]] = {}
        self._paused_at_s = 0.0
        self._offset = 0  # output-rate samples of the track before the current buffer
        self._program = 0  # output.program_number of the current track's buffer
        self._prepared: dict[int, PreparedAudio] = {}
        self._next_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._join_task: asyncio.Task[None] | None = None
        self._joining: set[asyncio.Task[None]] = set()
        self._switching = False  # the next track is being prepared or queued
        self._lights_ahead = False  # the lights already play the queued next track
        self._lock = asyncio.Lock()
        self.cpu_s = 0.0  # the player loop's own CPU (thread time), for the cost figure

    # -- the API ---------------------------------------------------------------------------
    def queue(self, tracks: list[ShowTrack], replace: bool = False) -> None:
        """Append tracks to the set list (``replace``: a new set list, after a stop)."""
        if replace:
            self.tracks, self.index, self._prepared = [], 0, {}
        self.tracks.extend(tracks)
        self._emit("queue", {"tracks": [t.to_dict() for t in self.tracks]})

    def snapshot(self) -> dict:
        """The state for an API: state, track, position, set list."""
        track = self.tracks[self.index] if self.index < len(self.tracks) else None
        return {"state": self.state, "index": self.index, "position_s": self.position_s(),
                "track": track.to_dict() if track else None,
                "tracks": [t.to_dict() for t in self.tracks], "skipped": list(self.skipped),
                "drift_ppm": round(self.output.report().drift_ppm, 2),
                "light_rate_ppm": self.lights.rate_ppm}

    async def prepare(self, index: int = 0) -> None:
        """Decode and resample track ``index`` and deploy its bundle to the devices online,
        ahead of ``play`` (which then starts within ``START_LEAD_S``)."""
        if index < len(self.tracks) and await self._audio(index) is not None:
            await self._deploy(self.tracks[index], self._online())

    async def play(self, index: int = 0, position_s: float = 0.0) -> None:
        """Start track ``index`` at ``position_s`` (sound and lights); starts the loop."""
        async with self._lock:
            await self._start(index, position_s)
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="show player")
            self._join_task = asyncio.create_task(self._joins(), name="show joins")

    async def pause(self) -> None:
        async with self._lock:
            if self.state != "playing":
                return
            # What is written is heard up to a DAC latency later: pause there, sound and
            # lights alike (the stop reaches the devices within their network delay).
            latency_us = self.output.report().dac_latency_ms * 1e3
            self._paused_at_s = self.position_s(ahead_s=latency_us / 1e6)
            self.output.stop_sound()
            self._cancel_next()
            await self.lights.stop(int(now_us() + latency_us))
            self._set_state("paused")

    async def resume(self) -> None:
        if self.state == "paused":
            await self.play(self.index, self._paused_at_s)

    async def seek(self, position_s: float) -> None:
        await self.play(self.index, max(0.0, position_s))

    async def next(self) -> None:
        await self.play(self.index + 1)

    async def previous(self) -> None:
        restart = self.position_s() > RESTART_WITHIN_S
        await self.play(self.index if restart else max(0, self.index - 1))

    async def stop(self) -> None:
        async with self._lock:
            self.output.stop_sound()
            self._cancel_next()
            if self.lights.playing:
                await self.lights.stop()
            self._set_state("stopped")

    async def close(self) -> None:
        """Stop, and end the player's tasks."""
        await self.stop()
        for task in (self._loop_task, self._join_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = self._join_task = None

    def position_s(self, ahead_s: float = 0.0) -> float:
        """Position in the current track heard now (+ ``ahead_s``), seconds."""
        if self.state == "paused":
            return self._paused_at_s
        heard = self.heard_position_us(now_us() + ahead_s * 1e6)
        return max(0.0, heard / 1e6) if heard is not None else 0.0

    def heard_position_us(self, agent_us: float) -> float | None:
        """Map position (µs) of the current track heard at ``agent_us``."""
        if self.output.program_number != self._program:
            return None  # the next track is already playing; the loop catches up
        sample = self.output.position_at(agent_us)
        if sample is None:
            return None
        return (self._offset + sample) * 1e6 / self.output.rate_hz

    # -- starting --------------------------------------------------------------------------
    async def _start(self, index: int, position_s: float) -> None:
        self._cancel_next()
        while index < len(self.tracks):
            audio = await self._audio(index)
            if audio is not None:
                break
            index += 1
        else:
            self.output.stop_sound()
            if self.lights.playing:
                await self.lights.stop()
            self._set_state("stopped")
            self._emit("ended", {})
            return
        track = self.tracks[index]
        await self._deploy(track, self._online())
        offset = min(int(position_s * audio.output_rate_hz), audio.frames.shape[0] - 1)
        part = PreparedAudio(audio.frames[offset:], audio.source_rate_hz,
                             audio.output_rate_hz)
        report = self.output.report()
        if report.callbacks > 0 and self.output._dac.ready:  # the card's measured speed
            self.lights.rate_ppm = round(1e6 * (1 + report.drift_ppm / 1e6))
        start_us = self.output.play(part, start_us=now_us() + START_LEAD_S * 1e6)
        self.index, self._offset, self._program = index, offset, self.output.program_number
        await self.lights.play(track.track_id, offset * 1e6 / audio.output_rate_hz, start_us)
        self._set_state("playing")
        self._emit("now_playing", {"index": index, **track.to_dict(),
                                   "position_s": offset / audio.output_rate_hz,
                                   "duration_s": round(audio.seconds, 3)})
        for stale in [k for k in self._prepared if k not in (index, index + 1)]:
            del self._prepared[stale]

    async def _audio(self, index: int) -> PreparedAudio | None:
        """The track's audio at the output's rate (decoded and resampled in a thread);
        None, after one log line naming it, when it cannot be decoded."""
        if index in self._prepared:
            return self._prepared[index]
        track = self.tracks[index]
        try:
            samples, rate = await asyncio.to_thread(track.load)
            audio = await asyncio.to_thread(self.output.prepare, samples, rate)
        except Exception as exc:  # any decoder failure: skip the track, the show goes on
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("skipped %s: %s", track.title, reason)
            self.skipped.append(track.title)
            self._emit("skipped", {"index": index, "title": track.title, "reason": reason})
            return None
        self._prepared[index] = audio
        return audio

    def _online(self) -> list[str]:
        """Show devices heard from and not gone (the others join when they say hello)."""
        status = self.transport.status
        return [d for d in self.device_ids
                if presence.is_online(status.get(d)) or (d not in status
                                                          and d in self.transport.hellos)]

    async def _deploy(self, track: ShowTrack, device_ids: list[str],
                      gate: GatedActivation | None = None) -> list[str]:
        """Send the track's bundle to those of ``device_ids`` that lack it (activated at
        ``gate``'s instant, else at once); returns the devices that hold it now.

        Wanted at once, a bundle a device holds as its previous one (a seek or previous
        after the next track was handed over, near a boundary) comes back with a
        ``rollback``: one round trip, no transfer; the device cancels a hand-over still
        ahead (protocol section 6). The ``activated`` answer must name the track, else
        (a device changed by someone else) the bundle is sent as usual."""
        wanted = (track.track_id, track.bundle_version)
        lacking = [d for d in device_ids if self._active(d) != wanted]
        ok = [d for d in device_ids if d not in lacking]
        if lacking and gate is None:
            back = [d for d in lacking if self._previous.get(d) == wanted]
            for result in (await deploy.rollback(self.transport, back, expect=wanted)
                           if back else []):
                self._previous.pop(result.id, None)  # the store keeps none after a rollback
                if result.ok:
                    self.rollbacks += 1
                    ok.append(result.id)
                    lacking.remove(result.id)
                    log.info("%s: %s rolled back to it", track.title, result.id)
                else:
                    log.info("%s: %s did not roll back to it (%s): sending it", track.title,
                             result.id, result.error)
        if not lacking:
            if gate is not None:
                await gate.wait_for_play(self.transport, ok)
            return ok
        # Noted before the transfer: a seek may cancel it after a device activated the
        # bundle but before its answer is read here. A note left by a transfer that never
        # activated is harmless: a rollback is tried only when the device's status says
        # it left the wanted bundle, and its answer must name it.
        for d in lacking:
            held = self._active(d)
            if held is not None and held != wanted:
                self._previous[d] = held
        results = await deploy.deploy(gate.wrap(self.transport) if gate else self.transport,
                                      lacking, track.bundle, track.track_id,
                                      track.bundle_version)
        for result in results:
            if result.ok:
                ok.append(result.id)
                self.transfers += 1
            else:
                log.warning("%s: %s", track.title, result.error)
        return ok

    def _active(self, device_id: str) -> tuple[str, int] | None:
        status = self.transport.status.get(device_id)
        if status is not None and status.active_track:
            return status.active_track, status.bundle_version
        return None

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        last_steer = last_position = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            cpu = time.thread_time()
            try:
                async with self._lock:
                    if self.state != "playing":
                        continue
                    if self.output.program_number != self._program:
                        await self._switched()
                    elif self.output.finished:
                        self._set_state("stopped")
                        await self.lights.stop()
                        self._emit("ended", {})
                        continue
                    now = time.monotonic()
                    if not self._lights_ahead:
                        # every tick: re-anchor at once when the sound jumped (an xrun);
                        # every STEER_S: the rate that follows the card's drift
                        rate = now - last_steer >= STEER_S
                        last_steer = now if rate else last_steer
                        await self.lights.steer(self.heard_position_us, rate)
                    if now - last_position >= POSITION_EVERY_S:
                        last_position = now
                        self._position_events()
                    self._maybe_prepare_next()
            except Exception:  # the show goes on; the log has the trace
                log.exception("show player")
            finally:
                self.cpu_s += time.thread_time() - cpu

    async def _switched(self) -> None:
        """The output started the queued next track (gapless)."""
        self.index += 1
        self._offset = 0
        self._program = self.output.program_number
        self._switching = self._lights_ahead = False
        self.switches += 1
        self.switch_heard_us.append(self.output.heard_us(0, self.output.rate_hz) or 0.0)
        track = self.tracks[self.index]
        audio = self._prepared.get(self.index)
        self._emit("now_playing", {"index": self.index, **track.to_dict(), "position_s": 0.0,
                                   "duration_s": round(audio.seconds, 3) if audio else None})
        log.info("now playing %s", track.title)

    def _position_events(self) -> None:
        position = self.position_s()
        track = self.tracks[self.index]
        self._emit("position", {"index": self.index, "position_s": round(position, 3)})
        beats = np.asarray(track.beats_s)
        following = int(np.searchsorted(beats, position))
        if following < len(beats):
            self._emit("next_beat", {"index": following, "beat_s": float(beats[following]),
                                     "in_s": round(float(beats[following]) - position, 3)})

    def _maybe_prepare_next(self) -> None:
        if (self._next_task is not None and not self._next_task.done()) or self._switching:
            return
        remaining_s = (self.output.length - (self.output.position_at(now_us()) or 0.0)) \
            / self.output.rate_hz
        if remaining_s <= PREPARE_AHEAD_S and self.index + 1 < len(self.tracks):
            self._switching = True
            self._next_task = asyncio.create_task(self._queue_next(), name="show next")

    async def _queue_next(self) -> None:
        """Decode the next playable track, queue it gaplessly, move the lights at its start."""
        queued = False
        try:
            index = self.index + 1
            while index < len(self.tracks) and await self._audio(index) is None:
                del self.tracks[index]  # skipped: the set list goes on with the one after
            if index >= len(self.tracks):
                return
            track, audio = self.tracks[index], self._prepared[index]
            program, offset = self._program, self._offset
            if not self.output.play_next(audio):
                return
            queued = True
            current = self.tracks[self.index]
            end = self.output.length
            boundary_us = self.output.heard_us(end, self.output.rate_hz) or now_us()
            last_beat = max((b for b in current.beats_s
                             if (b * self.output.rate_hz - offset) < end), default=None)
            after_last = (self.output.heard_us(last_beat * self.output.rate_hz - offset,
                                               self.output.rate_hz) or 0.0) + 80_000 \
                if last_beat is not None else 0.0
            activate_us = min(max(after_last, boundary_us - SWITCH_MAX_S * 1e6),
                              boundary_us - SWITCH_MIN_S * 1e6)
            holding = await self._deploy(track, self._online(),
                                         GatedActivation(activate_us, boundary_us))
            # Devices that joined during the transfer get the bundle now (past the gate).
            joined = [d for d in self._online() if d not in holding]
            if joined:
                holding += await self._deploy(track, joined)
            if self.output.program_number not in (program, program + 1):
                return  # a transport command came meanwhile
            boundary_us = self.output.heard_us(0 if self.output.program_number != program
                                               else end, self.output.rate_hz) or boundary_us
            self._lights_ahead = True
            await self.lights.play(track.track_id, 0.0, boundary_us)
            missing = sorted(set(self._online()) - set(holding))
            if missing:
                log.warning("%s: no lights on %s (the bundle did not arrive)", track.title,
                            ", ".join(missing))
        except Exception:
            log.exception("preparing the next track")
        finally:
            if not queued:
                self._switching = False

    def _cancel_next(self) -> None:
        task, self._next_task = self._next_task, None
        if task is not None:
            task.cancel()
        self._switching = self._lights_ahead = False

    # -- devices that come back ------------------------------------------------------------
    async def _joins(self) -> None:
        heard = self.transport.listen_all()
        try:
            while True:
                item = await heard.get()
                if item.message.kind != "hello" or item.device_id not in self.device_ids:
                    continue
                if self.state == "playing":
                    task = asyncio.create_task(self._join(item.device_id), name="show join")
                    self._joining.add(task)
                    task.add_done_callback(self._joining.discard)
        finally:
            self.transport.unlisten(heard)

    async def _join(self, device_id: str) -> None:
        await asyncio.sleep(0.5)  # its status follows the hello: the deploy skips by it
        while self._lights_ahead:  # the lights are between two tracks: join the new one
            await asyncio.sleep(0.1)
        track = self.tracks[self.index]
        if device_id in await self._deploy(track, [device_id]) and self.state == "playing":
            await self.lights.join(device_id)
            log.info("%s joined at %.1f s of %s", device_id, self.position_s(), track.title)

    # -- events ----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit("state", {"state": state})

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a listener's bug must not stop the show
                log.exception("show event listener")

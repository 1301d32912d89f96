"""The demo's room: where its song is heard, and the lights measured against it.

``open_room(choice)`` picks the room: ``soundcard`` when PortAudio has an output device
(the song is heard, nothing records it), ``jack`` otherwise: a virtual room (a private
JACK server with the dummy backend, docs/audio.md) whose speaker feed a recorder
captures with the time each sample is heard. ``auto`` is the sound card when there is
one, else the virtual room. ``none`` (or no jackd and no card) plays the lights alone.

``DemoRoom.play(...)`` plays the song through the show player (sound and lights on one
timeline) and, in the virtual room, returns per device the light-to-sound error: each
LED beat frame's true time minus the time the beat it shows was heard. A beat is heard
at the capture index where the song starts (cross-correlation,
``sound_report.song_start_index``) plus its position in the song: the error is the
system's (sync, DAC time, drift), not the analyzer's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gridcast.host.cli import output

ROOMS = ("auto", "jack", "soundcard", "none")
RECORDER_LEAD_S = 10.0  # JACK's clock settles after a client joins (docs/audio.md)
# 1024 frames (21 ms) per cycle, as the show bench: 47 wake-ups a second rather than 188,
# so the room costs the simulated devices (sharing the machine) little CPU.
ROOM_PERIOD_FRAMES = 1024


@dataclass
class DemoRoom:
    kind: str | None  # "jack", "soundcard" or None (lights only)
    device: str | int | None = None  # the PortAudio output device
    name: str | None = None  # the JACK server's name (virtual room)
    _output: Any = None
    _recorder: Any = None
    notes: list[str] = field(default_factory=list)

    def open_output(self) -> None:
        from gridcast.agent.show.output import ShowOutput

        if self.kind is None:
            return
        self._output = ShowOutput(self.device, channels=1 if self.kind == "jack" else 2)
        self._output.__enter__()

    def start_recording(self, max_seconds: float) -> None:
        """The virtual room's recorder (started early: JACK's clock settles after it)."""
        from gridcast.agent.audio.capture import RoomRecorder

        if self.kind == "jack" and self.name is not None:
            self._recorder = RoomRecorder(self.name, max_seconds=max_seconds).start()

    async def play(self, transport: Any, ids: list[str], track: Any, samples: Any,
                   rate_hz: float, devices: list[Any],
                   wait: Callable[[float, str], Awaitable[None]]) -> dict[str, Any]:
        """Play ``track`` (a ShowTrack) with its sound; the sound report per device id
        (empty outside the virtual room)."""
        import numpy as np

        from gridcast.agent.show.player import ShowPlayer
        from gridcast.agent.simulation.sound_report import song_start_index, sound_to_light

        player = ShowPlayer(transport, ids, self._output)
        player.queue([track])
        await player.prepare()
        seconds = len(samples) / rate_hz
        await player.play()
        output.info(f"playing {track.track_id} on {len(ids)} devices and into the "
                    f"{'virtual room (JACK)' if self.kind == 'jack' else 'sound card'}")
        await wait(seconds + 0.5, "playing")
        while player.state == "playing":  # the output's clock decides when it ended
            await asyncio.sleep(0.1)
        xruns = self._output.report().xruns
        await player.close()
        if self._recorder is None:
            return {"xruns": {"output": xruns}, "devices": {}}
        capture = self._recorder.stop()
        self._recorder = None
        start = song_start_index(capture, samples, rate_hz)
        heard = capture.heard_us(start + np.asarray(track.beats_s) * capture.rate_hz)
        report = sound_to_light(devices, heard, capture)
        errors_us = [float(e) * 1e3 for f in report.values() for e in f["errors_ms"]]
        delays = [d for f in report.values() for d in f["delays_us"]]
        return {"xruns": {"output": xruns, "room": capture.xruns}, "devices": {
            dev_id: {k: v for k, v in figures.items()
                     if k != "errors_ms" and not k.endswith("_us")}
            for dev_id, figures in report.items()},
            "scored": (errors_us, delays)}  # every device's beats, for timing_problems

    def close(self) -> None:
        if self._recorder is not None:
            with contextlib.suppress(Exception):
                self._recorder.stop()
            self._recorder = None
        if self._output is not None:
            self._output.__exit__(None, None, None)
            self._output = None


def _has_sound_card() -> bool:
    import sounddevice as sd

    try:
        return int(sd.default.device[1] if sd.default.device[1] is not None else -1) >= 0 \
            or any(d["max_output_channels"] > 0 for d in sd.query_devices())
    except sd.PortAudioError:
        return False


@contextlib.contextmanager
def open_room(choice: str) -> Iterator[DemoRoom]:
    """The room the demo plays into (see the module doc); closes it on exit."""
    from gridcast.agent.audio.errors import RoomError
    from gridcast.agent.audio.room import VirtualRoom

    if choice == "none":
        yield DemoRoom(None)
        return
    if choice == "soundcard" or (choice == "auto" and _has_sound_card()):
        room = DemoRoom("soundcard")
        room.open_output()
        try:
            yield room
        finally:
            room.close()
        return
    try:
        jack = VirtualRoom(period_frames=ROOM_PERIOD_FRAMES).start()
    except RoomError as exc:
        if choice == "jack":
            raise
        output.warn(f"no sound card and no virtual room ({exc}); the lights play alone")
        yield DemoRoom(None)
        return
    room = DemoRoom("jack", jack.output_device, jack.name)
    try:
        room.open_output()
        yield room
    finally:
        room.close()
        jack.stop()

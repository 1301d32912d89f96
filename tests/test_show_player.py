"""The show player in a virtual room, without devices: the lights' timeline (what the
devices would be told) against the sound heard, gapless switches, skips, pause/seek.

The room runs at 48005 Hz while the output assumes 48000 Hz: a sound card 104 ppm fast.
The player must measure it and steer the lights onto the sound.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from gridcast.agent.audio.capture import Capture, RoomRecorder
from gridcast.agent.audio.clicks import click_train, find_onsets
from gridcast.agent.audio.room import VirtualRoom
from gridcast.agent.show.lights import replay
from gridcast.agent.show.output import ShowOutput
from gridcast.agent.show.player import ShowPlayer
from gridcast.agent.show.set_list import ShowTrack
from gridcast.agent.transport import Transport

RATE = 48000
BEAT_S = 0.5


class RecordingTransport(Transport):
    """No devices: sends are kept, nothing answers."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, bytes]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        self.sent.append((device_id, leaf, payload))

    async def broadcast(self, payload: bytes) -> None:
        self.sent.append(("*", "cmd", payload))


def click_track(name: str, seconds: float, first_s: float) -> tuple[ShowTrack, int]:
    """Clicks every BEAT_S from ``first_s`` to the last sample's neighbourhood."""
    beats = np.arange(first_s, seconds - 0.01, BEAT_S)
    signal, _ = click_train(RATE, beats, seconds)
    track = ShowTrack(name, name, b"", 1, beats.tolist(), lambda: (signal, RATE))
    return track, len(signal)


def broken(name: str) -> ShowTrack:
    def load() -> tuple[np.ndarray, float]:
        raise ValueError(f"{name}: not a readable audio file")

    return ShowTrack(name, name, b"", 1, [], load)


def light_errors_ms(capture: Capture, player: ShowPlayer, tracks: list[ShowTrack],
                    heard_onsets: np.ndarray) -> np.ndarray:
    """For every heard click: the lights' time of its beat (as the devices compute it
    from the commands sent) minus the time it was heard, in ms."""
    errors = []
    for heard in heard_onsets:
        best = None
        for track in tracks:
            timeline = replay(player.lights.sent, track.track_id, heard)
            if timeline is None:
                continue
            for beat in track.beats_s:
                t = timeline.agent_time(round(beat * 1e6))
                if best is None or abs(t - heard) < abs(best):
                    best = t - heard
        if best is not None and abs(best) < 100_000:
            errors.append(best / 1e3)
    return np.asarray(errors)


def test_a_set_list_plays_gaplessly_with_lights_on_the_sound_of_a_drifting_card():
    one, length_one = click_track("one", 20.0, 0.25)
    two, _ = click_track("two", 6.0, 0.0)  # a click on its very first sample
    events: list[tuple[str, dict]] = []

    async def scenario(room: VirtualRoom, output: ShowOutput) -> tuple[ShowPlayer, Capture]:
        transport = RecordingTransport()
        player = ShowPlayer(transport, [], output, on_event=lambda k, d: events.append((k, d)))
        player.queue([one, broken("bad.flac"), two])
        recorder = RoomRecorder(room.name, max_seconds=60).start()
        await player.play()
        deadline = time.monotonic() + 40  # 26 s of sound: ended well before
        while player.state == "playing" and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        await player.close()
        return player, recorder.stop()

    with VirtualRoom(rate_hz=48005, period_frames=1024) as room:
        output = ShowOutput(room.output_device, assume_rate_hz=RATE)
        with output:
            player, capture = asyncio.run(scenario(room, output))
            report = output.report()
    print(f"\nreport: {report}, capture xruns {capture.xruns}")
    onsets = find_onsets(capture.samples, capture.rate_hz)
    assert len(onsets) == len(one.beats_s) + len(two.beats_s)
    # Gapless: track two's first click (its sample 0) lies exactly (length one - last
    # click of one) frames after the last click of track one, at the room's frames.
    last_one = len(one.beats_s) - 1
    expected = length_one - round(one.beats_s[-1] * RATE)
    gap = onsets[last_one + 1] - onsets[last_one] - expected
    assert abs(gap) < 0.5, f"{gap:.2f} samples between the tracks"
    assert player.skipped == ["bad.flac"]
    assert any(k == "skipped" and d["title"] == "bad.flac" for k, d in events)
    assert [d["title"] for k, d in events if k == "now_playing"] == ["one", "two"]
    settled = capture.settled(capture.heard_us(onsets))
    errors = light_errors_ms(capture, player, [one, two], capture.heard_us(onsets)[settled])
    print(f"\nlights - sound: p50 {np.percentile(np.abs(errors), 50):.3f} ms, p99 "
          f"{np.percentile(np.abs(errors), 99):.3f} ms over {len(errors)} clicks; drift "
          f"{report.drift_ppm:.1f} ppm, rate messages {player.lights.rate_messages}, seeks "
          f"{player.lights.seeks}, gap {gap:.2f} samples")
    assert report.drift_ppm == pytest.approx(104.17, abs=10)
    assert len(errors) >= 0.9 * len(onsets)
    assert np.percentile(np.abs(errors), 99) <= 1.0

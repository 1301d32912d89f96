"""The show player in a virtual room: the lights' timeline (what the devices would be
told) against the sound heard, gapless switches, skips; and with devices made of the
real transfer Receiver, the bundles a seek back after a hand-over costs.

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
from gridcast.agent.clock import now_us
from gridcast.agent.show.lights import replay
from gridcast.agent.show.output import ShowOutput
from gridcast.agent.show.player import ShowPlayer
from gridcast.agent.show.set_list import ShowTrack
from gridcast.agent.transport import Incoming, Transport
from gridcast.hil.bundles import make_bundle
from gridcast.protocol import messages, topics
from tests.test_rollout import KEY, LoopbackDevice, LoopbackTransport

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


ACTIVATED_LATE_S = 0.5


class HandOverFleet(LoopbackTransport):
    """Devices made of the real transfer Receiver (tests/test_rollout.py) that say hello
    with the hand-over protocol and publish their status after every activation and
    rollback, as the firmware does; every command they get is kept."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__({d: LoopbackDevice(KEY) for d in ids})
        self.heard: list[tuple[str, str]] = []  # (device, message kind)

    async def start(self) -> None:
        await super().start()
        for d in self.devices:
            self._deliver(Incoming(d, topics.HELLO, messages.encode(
                "hello", proto_version=messages.HANDOVER_PROTOCOL, device_id=d,
                max_frame=4096, window=4), 0))
            self._publish_status(d)

    def _publish_status(self, device_id: str) -> None:
        active = self.devices[device_id].store.active()
        self._deliver(Incoming(device_id, topics.STATUS, messages.encode(
            "status", state="online", active_track=active[0] if active else "",
            bundle_version=active[1] if active else 0), 0))

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        kind = messages.decode(payload).kind
        self.heard.append((device_id, kind))
        reply = self.devices[device_id].handle(payload)
        if kind in ("activate", "rollback"):
            self._publish_status(device_id)
        if reply is None:
            return
        answer = Incoming(device_id, topics.REPLY, reply, 0)
        if kind == "activate":
            # The answer to the hand-over's activate comes late, after its status (as it
            # may over a network): the seek below then comes while the player still waits
            # for it, and cancels that transfer.
            asyncio.get_running_loop().call_later(ACTIVATED_LATE_S, self._deliver, answer)
        else:
            self._deliver(answer)

    def kinds(self) -> list[str]:
        """The kinds of the messages the devices got, in order."""
        return [kind for _, kind in self.heard]

    def active(self, device_id: str) -> str | None:
        entry = self.devices[device_id].store.active()
        return entry[0] if entry else None


def test_a_seek_back_after_the_handover_rolls_the_devices_back_without_a_transfer():
    """The next track's bundle is activated 3 s before the boundary; a seek back into
    the current track then needs the current bundle again: the devices roll back (one
    round trip) instead of receiving it again, and the lights play it from the seek."""
    one_beats = np.arange(0.25, 8.0 - 0.01, BEAT_S)
    one_signal, _ = click_train(RATE, one_beats, 8.0)
    two_beats = np.arange(0.0, 2.5 - 0.01, BEAT_S)
    two_signal, _ = click_train(RATE, two_beats, 2.5)
    one = ShowTrack("one", "one", make_bundle(KEY, 8.0 / 60, "one", seed=1), 1,
                    one_beats.tolist(), lambda: (one_signal, RATE))
    two = ShowTrack("two", "two", make_bundle(KEY, 2.5 / 60, "two", seed=2), 1,
                    two_beats.tolist(), lambda: (two_signal, RATE))
    ids = ["d0", "d1", "d2"]

    async def scenario(output: ShowOutput) -> tuple[HandOverFleet, ShowPlayer, dict]:
        fleet = HandOverFleet(ids)
        await fleet.__aenter__()  # the loop the replies are delivered on
        player = ShowPlayer(fleet, ids, output)
        player.queue([one, two])
        await player.play()
        deadline = time.monotonic() + 15
        while any(fleet.active(d) != "two" for d in ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # (the seek may come before the player has read the devices' answers: the
        # hand-over's transfer is then cancelled, and the devices hold the bundle anyway)
        handed_over = {"active": [fleet.active(d) for d in ids], "index": player.index,
                       "offers": fleet.kinds().count("bundle_offer"),
                       "heard": len(fleet.heard)}
        await player.seek(4.0)  # the hand-over was at 5 s
        after_seek = {"active": [fleet.active(d) for d in ids], "index": player.index,
                      "rollbacks": player.rollbacks,
                      "kinds": fleet.kinds()[handed_over["heard"]:],
                      "last_light_command": player.lights.sent[-1][1:3]}
        await asyncio.sleep(1.0)  # the sound plays from 4 s: where the lights put it
        t = now_us()
        heard = player.heard_position_us(t)
        assert heard is not None and player.lights.model is not None
        after_seek["lights_minus_sound_us"] = player.lights.model.agent_time(round(heard)) - t
        while player.state == "playing" and time.monotonic() < deadline + 15:
            await asyncio.sleep(0.25)
        await player.close()
        return fleet, player, {"handed_over": handed_over, "after_seek": after_seek}

    with VirtualRoom(period_frames=1024) as room:
        output = ShowOutput(room.output_device, assume_rate_hz=RATE)
        with output:
            fleet, player, seen = asyncio.run(scenario(output))
    handed_over, after_seek = seen["handed_over"], seen["after_seek"]
    print(f"\n{seen}, at the end: {fleet.kinds().count('bundle_offer')} offers, rollbacks "
          f"{player.rollbacks}")
    # the hand-over happened while track one was still playing
    assert handed_over["active"] == ["two"] * 3 and handed_over["index"] == 0
    assert handed_over["offers"] == 6  # one and two, to each device
    # the seek: a rollback on every device, no offer and no chunk
    assert after_seek["active"] == ["one"] * 3 and after_seek["index"] == 0
    assert after_seek["rollbacks"] == 3
    assert "bundle_offer" not in after_seek["kinds"] and "chunk" not in after_seek["kinds"]
    assert after_seek["kinds"].count("rollback") == 3
    # the lights play track one from 4 s, on its sound
    assert after_seek["last_light_command"] == ("play", "one")
    assert abs(after_seek["lights_minus_sound_us"]) <= 1000
    # then the set list goes on: track two's bundle is sent again (a rollback keeps none)
    assert [fleet.active(d) for d in ids] == ["two"] * 3
    assert fleet.kinds().count("bundle_offer") == 9 and player.switches == 1

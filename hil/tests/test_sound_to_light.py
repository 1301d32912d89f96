"""Lights on the sound: the show player plays two tracks into a virtual room while two
simulated devices show their beats; every LED beat frame is compared with the time its
click was heard in the room (issue 14).

The room's card runs 104 ppm fast (VirtualRoom at 48005 Hz, output told 48000 Hz), so
the lights only land if the player measures the card's clock and steers the devices'
timeline onto it. The second track follows the first gaplessly (its first sample is a
click, checked on the capture), and the devices switch bundles in between: the first
track's last click comes 0.1 s before the boundary, and both it and the second track's
first click must be lit (the hand-over, docs/protocol.md 6). The second track is then
played again: the same bundle, no activation, and again the clicks either side of the
boundary must be lit (a hand-over to itself). A third
device is off when the show starts and is switched on 4 s in: it must join at the
current position (its clock sync starts from scratch then, so only its median is held
to the target).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from gridcast.agent import presence
from gridcast.agent.audio.capture import Capture, RoomRecorder
from gridcast.agent.audio.clicks import find_onsets
from gridcast.agent.audio.room import VirtualRoom
from gridcast.agent.clock import now_us
from gridcast.agent.show.output import ShowOutput
from gridcast.agent.show.player import ShowPlayer
from gridcast.agent.simulation.led_report import read_led_log, timing_problems
from gridcast.agent.simulation.sound_report import sound_to_light
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import open_transport
from gridcast.hil.scenario_helpers import run
from gridcast.hil.show_scenario import (
    click_song,
    first_nonzero_s,
    gap_samples,
    heard_first_sound_us,
)

pytestmark = pytest.mark.sim_only

WARMUP_S = 20  # the devices' clock sync settles (offset and skew) before the show
SONG_S = 20.0
SHORT_S = 5.5  # the second track, played twice: its last click 0.1 s before its end
MAX_P99_MS = 2.0
MAX_FIRST_SOUND_MS = 500.0


def test_led_beats_land_on_the_heard_clicks(broker, simulator, key):
    sim = simulator(3, f"127.0.0.1:{broker.port}", skews_ppm=[0, 100, 0], prefix="s2l")
    ids = [d.id for d in sim.devices]
    late = sim.devices[2]
    one = click_song("s2l-one", SONG_S, 120.0, seed=1, first_beat_s=0.4)  # last at 19.9 s
    two = click_song("s2l-two", SHORT_S, 100.0, seed=2, first_beat_s=0.0)
    started = time.monotonic()

    async def scenario(room: VirtualRoom, output: ShowOutput
                       ) -> tuple[ShowPlayer, Capture, int]:
        async with open_transport(broker.url) as transport:
            responder = SyncResponder(transport)
            responder.start()
            await transport.wait_online(ids, timeout_s=30)
            late.stop()
            while presence.is_online(transport.status.get(late.id)):
                await asyncio.sleep(0.1)
            player = ShowPlayer(transport, ids, output)
            player.queue([one.track(key), two.track(key), two.track(key)])
            await player.prepare()
            await asyncio.sleep(max(0.0, WARMUP_S - (time.monotonic() - started)))
            recorder = RoomRecorder(room.name, max_seconds=SONG_S + 2 * SHORT_S + 10).start()
            called = now_us()
            await player.play()
            await asyncio.sleep(4.0)
            late.start()
            while player.state == "playing":
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)
            capture = recorder.stop()
            await player.close()
            await responder.stop()
            return player, capture, called

    with VirtualRoom(rate_hz=48005, period_frames=1024) as room:
        output = ShowOutput(room.output_device, channels=1, assume_rate_hz=48000)
        with output:
            player, capture, called = run(scenario(room, output))
            report = output.report()

    onsets = find_onsets(capture.samples, capture.rate_hz)
    heard = capture.heard_us(onsets)
    figures = sound_to_light(sim.devices, heard[capture.settled(heard)], capture)
    first_sound_ms = (heard_first_sound_us(capture) - called) / 1e3 - first_nonzero_s(one) * 1e3
    gap = gap_samples(capture, onsets, player.switch_heard_us[0], one, two)
    print(f"\nfirst sound {first_sound_ms:.1f} ms after play(); gap {gap:.2f} samples; card "
          f"drift {report.drift_ppm:.1f} ppm; {player.lights.rate_messages} rate messages, "
          f"{player.lights.seeks} seeks; room xruns {capture.xruns}, output xruns "
          f"{report.xruns}")
    for dev_id, f in figures.items():
        print(dev_id, {k: v for k, v in f.items() if k != "errors_ms" and not k.endswith("_us")},
              "over 2 ms (s after play, ms):", [(round((t - called) / 1e6, 2), round(e, 2))
                                               for t, e in f["over_2ms_at_us"].T],
              "unmatched at:", ((f["unmatched_at_us"] - called) / 1e6).round(2))
    print("xruns at (s after play):", ((np.asarray(capture.xrun_us) - called) / 1e6).round(2),
          "switch at:", ((np.asarray(player.switch_heard_us) - called) / 1e6).round(2))
    assert len(onsets) == len(one.beats_s) + 2 * len(two.beats_s)
    assert len(player.switch_heard_us) == 2
    assert abs(gap) < 0.5
    assert first_sound_ms <= MAX_FIRST_SOUND_MS
    joined = figures.pop(late.id)
    assert joined["sound_beats"] >= len(onsets) // 2, joined
    assert joined["unmatched_frames"] == 0, joined
    assert np.median(np.abs(joined["errors_ms"])) <= MAX_P99_MS, joined
    # the last click before each boundary (0.1 s before it) and the first after it (on
    # it) are lit on every device that plays from the start, aimed on the sound (a frame
    # the host held up shows it: its delay after its due tick is logged). Clicks heard
    # while the room's clock rang after a JACK xrun cannot be judged (Capture.settled).
    first, second = len(one.beats_s), len(one.beats_s) + len(two.beats_s)
    around = np.concatenate([heard[first - 1:first + 1], heard[second - 1:second + 1]])
    around = around[capture.settled(around)]
    if around.size == 0:
        pytest.fail(f"JACK xruns at {capture.xrun_us} left no hand-over to judge: the "
                    "machine was too busy; re-run when it is calmer")
    for dev in sim.devices[:2]:
        lines = read_led_log(dev.led_log)
        shown = np.asarray([line["true_time_us"] for line in lines], dtype=np.float64)
        nearest = [int(np.argmin(np.abs(shown - t))) for t in around]
        aims = [(shown[k] - t - lines[k]["late_us"]) / 1e3
                for k, t in zip(nearest, around, strict=True)]
        assert max(np.abs(aims)) <= MAX_P99_MS, (dev.id, aims)
    errors_us: list[float] = []
    delays: list[int | None] = []
    for dev_id, f in figures.items():
        # every beat heard, the switch's too
        assert f["sound_beats"] >= len(onsets) - f["unsettled_frames"], (dev_id, f)
        assert f["unmatched_frames"] == 0, (dev_id, f)
        errors_us += list(f["errors_ms"] * 1e3)
        delays += f["delays_us"]
    # every beat aimed on its click, and few held up by the host (docs/firmware.md)
    assert not timing_problems(errors_us, delays, MAX_P99_MS), timing_problems(
        errors_us, delays, MAX_P99_MS)

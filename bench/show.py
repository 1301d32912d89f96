"""The show bench (issue 14's target): a set list through the show player into a virtual
room, three simulated devices, lights against the sound heard.

- Three devices running the firmware in MicroPython, clocks +10, -20 and +150 ppm, on
  MQTT through a jitter proxy (20 ± 10 ms each way).
- A sound card 104 ppm fast: VirtualRoom(rate_hz=48005) played by an output told 48000.
- Three generated songs (music with a click on every known beat; bundles from the known
  beats): 5 min at 124 BPM and 4 min at 100 BPM (48 kHz; the second begins with a click
  on its first sample), 4 min at 132 BPM (44.1 kHz: resampled). The set: play; pause at
  60 s for 5 s; resume; seek from 120 s to 180 s; track one flows gaplessly into two;
  next at 180 s into two; three plays to its end (about 11 minutes of sound).
- Error = each LED beat frame's true time (the simulator's log) minus the time the
  nearest click was heard (found in the room's capture with clicks.find_onsets).

    python bench/show.py [--short] [--warmup 90] [--period 1024]

``--short`` scales the set to about 2 minutes (a smoke run). Prints one JSON object:
per device sound_error_p50_ms / p99_ms / sound_beats, and xruns, first_sound_ms,
gap_samples, player CPU (output callback + player loop, % of one core over the set)
and the whole process's; ``boundary_click_ms``: each device's error on track one's last
click, heard 0.12 s before the gapless switch (None: not lit); and
``full_collections_at_s_ms``: when Python's full collections ran (s from the play, <0:
before it) and how long each took, to set beside the xruns' times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import secrets
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent.audio.capture import RoomRecorder  # noqa: E402
from gridcast.agent.audio.clicks import find_onsets  # noqa: E402
from gridcast.agent.audio.room import VirtualRoom  # noqa: E402
from gridcast.agent.broker import Mosquitto  # noqa: E402
from gridcast.agent.clock import now_us  # noqa: E402
from gridcast.agent.show.output import ShowOutput  # noqa: E402
from gridcast.agent.show.player import ShowPlayer  # noqa: E402
from gridcast.agent.simulation.devices import Simulator  # noqa: E402
from gridcast.agent.simulation.sound_report import read_led_log, sound_to_light  # noqa: E402
from gridcast.agent.sync_responder import SyncResponder  # noqa: E402
from gridcast.agent.transport import open_transport  # noqa: E402
from gridcast.hil.faults import Jitter, MqttJitterProxy  # noqa: E402
from gridcast.hil.show_scenario import (  # noqa: E402
    ClickSong,
    click_song,
    first_nonzero_s,
    gap_samples,
    heard_first_sound_us,
)

SKEWS_PPM = [10, -20, 150]
RECORDER_LEAD_S = 10.0


class FullCollections:
    """When Python's full (generation 2) collections ran and how long each held the
    interpreter: a callback written in Python (the output's) waits for them, so a
    long one could be an xrun's cause (docs/player.md)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []  # (start, agent µs; duration, ms)
        self._start = 0

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = now_us()
        else:
            self.runs.append((self._start, (now_us() - self._start) / 1e3))


def boundary_click(devices: list, heard_us: np.ndarray, switch_us: float) -> dict:
    """Per device, LED − sound (ms) for the last click heard before the gapless switch
    (None: not lit within 70 ms), and how far before the switch that click was heard."""
    before = heard_us[heard_us < switch_us]
    if not before.size:
        return {}
    last = float(before.max())
    out: dict = {"before_switch_ms": round((switch_us - last) / 1e3, 1)}
    for dev in devices:
        times = np.asarray([line["true_time_us"] for line in read_led_log(dev.led_log)])
        error = (times[np.argmin(np.abs(times - last))] - last) / 1e3 if times.size else None
        out[dev.id] = round(error, 3) if error is not None and abs(error) <= 70 else None
    return out


async def _at(player: ShowPlayer, index: int, position_s: float) -> None:
    """Until track ``index`` is heard at ``position_s``."""
    while not (player.index == index and player.position_s() >= position_s):
        if player.state != "playing":
            raise RuntimeError(f"the show stopped before track {index} reached {position_s} s")
        await asyncio.sleep(0.05)


async def show(args: argparse.Namespace, songs: list[ClickSong], key: bytes, ids: list[str],
               broker_url: str, room: VirtualRoom, output: ShowOutput) -> dict:
    scale = 0.2 if args.short else 1.0
    async with open_transport(broker_url) as transport:
        responder = SyncResponder(transport)
        responder.start()
        await transport.wait_online(ids, timeout_s=60)
        player = ShowPlayer(transport, ids, output)
        player.queue([song.track(key) for song in songs])
        await player.prepare()
        print(f"devices online; clocks settle for {args.warmup} s", file=sys.stderr)
        await asyncio.sleep(args.warmup)
        total_s = sum(len(s.samples) / s.rate_hz for s in songs) + 60
        recorder = RoomRecorder(room.name, max_seconds=total_s + RECORDER_LEAD_S).start()
        # A new JACK client changes the graph; JACK's clock (the capture's truth) may
        # ring for seconds after that (docs/audio.md), so the show starts later.
        await asyncio.sleep(RECORDER_LEAD_S)
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        callback0 = output.report().callback_cpu_s
        called = now_us()
        full = args.full_collections
        events: dict[str, float] = {}  # when each transport action was called (s from play)

        def mark(name: str) -> None:
            events[name] = round((now_us() - called) / 1e6, 1)

        await player.play()
        await _at(player, 0, 60 * scale)
        mark("pause")
        await player.pause()
        await asyncio.sleep(5)
        mark("resume")
        await player.resume()
        await _at(player, 0, 120 * scale)
        mark("seek")
        await player.seek(180 * scale)
        await _at(player, 1, 180 * scale * (4 / 5 if args.short else 1))
        mark("next")
        await player.next()
        while player.state == "playing":
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.5)
        capture = recorder.stop()
        wall, cpu1 = time.monotonic() - wall0, resource.getrusage(resource.RUSAGE_SELF)
        report = output.report()
        await player.close()
        await responder.stop()
    onsets = find_onsets(capture.samples, capture.rate_hz)
    heard = capture.heard_us(onsets)
    settled = capture.settled(heard)
    devices = sound_to_light(args.sim.devices, heard[settled], capture)
    player_cpu_s = report.callback_cpu_s - callback0 + player.cpu_s
    process_cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "set_seconds": round(wall, 1),
        "devices": {dev.id: {"skew_ppm": dev.skew_ppm,
                             **{k: v for k, v in devices[dev.id].items()
                                if k != "errors_ms" and not k.endswith("_us")},
                             "over_2ms_at_s_ms": [
                                 [round((t - called) / 1e6, 1), round(e, 2)]
                                 for t, e in devices[dev.id]["over_2ms_at_us"].T]}
                    for dev in args.sim.devices},
        "onsets_heard": int(onsets.size), "onsets_unsettled": int((~settled).sum()),
        "first_sound_ms": round((heard_first_sound_us(capture) - called) / 1e3
                                - first_nonzero_s(songs[0]) * 1e3, 1),
        "gap_samples": [round(gap_samples(capture, onsets, t, songs[0], songs[1]), 3)
                        for t in player.switch_heard_us[:1]],
        "xruns": {"output": report.xruns, "room": capture.xruns,
                  # the target's count: from play() to the end of the set (the output
                  # stream runs, silent, through the devices' clock warm-up before it)
                  "output_in_play": int(np.sum(np.asarray(report.xrun_us) >= called)),
                  "room_in_play": int(np.sum(np.asarray(capture.xrun_us) >= called)),
                  "output_at_s": ((np.asarray(report.xrun_us) - called) / 1e6).round(1).tolist(),
                  "transport_at_s": events,
                  "room_at_s": ((np.asarray(capture.xrun_us) - called) / 1e6).round(1).tolist(),
                  "recorder_dropped_buffers": capture.dropped_buffers},
        "card_drift_ppm": round(report.drift_ppm, 2),
        "card_true_ppm": round((48005 / 48000 - 1) * 1e6, 2),
        "light_rate_messages": player.lights.rate_messages,
        "light_seeks": player.lights.seeks,
        "player_cpu_pct": round(100 * player_cpu_s / wall, 2),
        "process_cpu_pct": round(100 * process_cpu_s / wall, 2),
        "boundary_click_ms": boundary_click(args.sim.devices, heard[settled],
                                            player.switch_heard_us[0])
        if player.switch_heard_us else {},
        "full_collections_at_s_ms": [[round((t - called) / 1e6, 1), round(ms, 1)]
                                     for t, ms in full.runs],
        "load_avg": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a 2-minute set (smoke run)")
    parser.add_argument("--warmup", type=float, default=90.0,
                        help="seconds the device clocks settle under jitter before the show")
    parser.add_argument("--period", type=int, default=1024, help="JACK frames per cycle")
    args = parser.parse_args()
    args.full_collections = FullCollections()
    gc.callbacks.append(args.full_collections)
    scale = 0.2 if args.short else 1.0
    # track one's last click 0.12 s before its end: inside the last 0.25 s, which only
    # the hand-over (protocol 4) lights
    songs = [click_song("show-one", 300 * scale, 124.0, 48000, seed=1, first_beat_s=0.85),
             click_song("show-two", 240 * scale, 100.0, 48000, seed=2, first_beat_s=0.0),
             click_song("show-three", 240 * scale, 132.0, 44100, seed=3)]
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="gridcast-show-bench-") as folder, \
            Mosquitto(folder=os.path.join(folder, "broker")) as broker:
        proxy = MqttJitterProxy("127.0.0.1", broker.port, Jitter(10, 30),
                                Jitter(10, 30)).start()
        try:
            with Simulator(3, f"127.0.0.1:{proxy.port}", key, os.path.join(folder, "sim"),
                           skews_ppm=SKEWS_PPM, prefix="show") as sim, \
                    VirtualRoom(rate_hz=48005, period_frames=args.period) as room:
                args.sim = sim
                output = ShowOutput(room.output_device, channels=1, assume_rate_hz=48000)
                with output:
                    result = asyncio.run(show(args, songs, key, [d.id for d in sim.devices],
                                              broker.url, room, output))
        finally:
            proxy.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

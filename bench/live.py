"""Live mode without a map, in the virtual room: |LED beat − annotated beat| on a set of clips.

    .venv/bin/python bench/live.py SET_DIR [--clips N] [--devices 3] [--json]
    .venv/bin/python bench/live.py SET_DIR --replay [--json]     # simulated time, no room
    .venv/bin/python bench/live.py SET_DIR [--replay] --plot live.png   # and a picture
    .venv/bin/python bench/live.py SET_DIR [--replay] --tempo-hint annotated  # an operator's
    .venv/bin/python bench/live.py SET_DIR [--replay] --downbeat-press 8      # presses on the one
    .venv/bin/python bench/live.py SET_DIR --clips 3 --cost 60   # CPU of gridcast live
    .venv/bin/python bench/live.py CORPUS --replay --where humanized_ms=0   # by MANIFEST.tsv

One JACK room (dummy backend, 44.1 kHz) holds two PortAudio clients: a *player*
(this script with ``--player``, a child process) that plays each clip of the set
with AudioOutput on the agent's timeline, and *live mode* (gridcast.agent.live_mode,
in this process) whose input is connected to the player's output ports (the room's
``system:capture`` is silent in the dummy backend). Live mode sends its beats over a
real mosquitto to simulated devices (the real firmware in the MicroPython unix port,
clocks skewed 0, +100, −100 ppm, kept in sync by the agent's responder). Each
device's LED frames (stamped with CLOCK_REALTIME by the simulator) are compared with
the clip's annotated beats, placed on the agent's timeline by the time the player's
sample 0 was heard.

Before the clips, a click train calibrates the input: the input hears the player's
ports a few buffers before the room's speakers would (JACK's playback latency), which
is the room's input latency; ``gridcast calibrate`` finds it the same way on a real
room. Then:

- ``led_f`` / ``tracker_f``: mean beat F-measure (mir_eval: 70 ms window, first 5 s
  trimmed) of the LED beats of all devices (each device scored, then averaged) and of
  the beats the tracker reported (their heard times), within each clip's duration.
- ``median_abs_ms`` / ``p90_abs_ms``: |LED − nearest annotated beat| for annotated
  beats after the LEDs locked (lock: realtime.lock_time_s), matched within 70 ms.
- ``lock_s_median``: median over clips of the LEDs' lock time (issue 4's definition);
  ``lock_strict_s_median`` the same with no stray flash among the four beats
  (``lock_time_s(strict=True)``: a clip followed at twice its tempo never locks there);
  ``tracker_lock_s_median`` the same for the tracker's beats at their heard times
  (those it decided after they were heard included, which no LED can show in time),
  and ``per_clip`` all three per clip.
- ``reactive_median_abs_ms``: a detect-then-flash design on the same run: each tracker
  beat flashed when the tracker decided it plus the measured broker delay
  (``net_ms``), against the annotated beats after the tracker locked.
- ``--tempo-hint annotated``: an operator who knows each track's BPM (the median of its
  annotated beat gaps) sets it as the clip starts (``LiveMode.set_tempo_hint``; in
  replay, each clip's tracker starts with it); ``tempo_hint`` in the output says so.
- ``--downbeat-press S``: an operator who presses on the one (``LiveMode.set_downbeat``)
  once per clip, at the annotated downbeat nearest S s into it, off by a human's error
  (normal, σ 20 ms, seeded by the clip's place in the set), the bar's length the clip's
  annotated one; clips without bar annotations get no press.
- ``led_downbeat_f``: the F-measure of the LED beats shown as the one (the model
  device's, or in the room each device's LED log ``bar_pos``) against the annotated
  downbeats; with or without presses. The bar is found in the audio
  (agent/live_bars.py); ``--tracker-bars`` gives the tracker's own guess instead, as
  before it (``bars`` in the output says which). In the room the windows are read in
  live mode's worker thread; ``--bar-reads-inline`` reads them in the input's reader
  thread instead, for A/B (``bar_reads`` in the output).
- ``--replay --input-latency-ms MS --poll-ms MS``: replay with the room's input
  latency (each block reaches live mode MS after its last sample was heard; the room's
  is about 35 ms) and the sender's poll (live mode's is 20 ms; replay's default 10).
- ``reader_block_ms``: in the room, how long the input's reader thread took per block
  (``TrackerBeatSource.feed``; p50, p99, max), after the calibration clicks.
- ``--reverb-s S --drr-db DB --crowd-snr-db DB``: a microphone in a room instead of a
  line from the mixer (host/evaluation/room_acoustics.py): the music reverberates (RT60
  ``S``, the direct sound ``DB`` above the tail) and a crowd talks and claps ``DB`` below
  it; ``--room-seed`` picks another room. The player plays, and replay feeds, what that
  microphone hears; ``room_acoustics`` in the output says which. The calibration clicks
  stay dry, as when the room is calibrated before the doors open.
- ``cpu_pct``: this process's CPU (live mode, the sender, the clock-sync responder)
  over the clips' wall time, percent of one core.

Run it at normal priority: the input callback runs on JACK's real-time thread but
needs Python's lock, and under ``nice`` the threads holding it are pushed off the CPU,
so the input overflows (docs/live.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics

ROOM_RATE = 44_100
ROOM_PERIOD = 512
CLICK_EVERY_S = 0.5
CLICKS = 8
MATCH_S = 0.07


# --- the player (child process) -----------------------------------------------------------
def acoustics(args: argparse.Namespace) -> RoomAcoustics:
    """The microphone's room from the command line (ValueError: a value out of range)."""
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics

    return RoomAcoustics(args.reverb_s, args.drr_db, args.crowd_snr_db, args.room_seed)


def acoustics_args(args: argparse.Namespace) -> list[str]:
    """The same room for the player process."""
    out = ["--reverb-s", str(args.reverb_s), "--drr-db", str(args.drr_db),
           "--room-seed", str(args.room_seed)]
    return out + (["--crowd-snr-db", str(args.crowd_snr_db)]
                  if args.crowd_snr_db is not None else [])


def player(room_device: str, paths: list[str], gap_s: float,
           acoustics: RoomAcoustics) -> None:
    from gridcast.agent.audio.clicks import click_train
    from gridcast.agent.audio.output import AudioOutput
    from gridcast.host.analysis import audio

    def say(**record: object) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    with AudioOutput(room_device, rate_hz=ROOM_RATE) as out:
        say(kind="ready")
        sys.stdin.readline()  # "go": the bench has connected the input
        onsets = np.arange(CLICKS) * CLICK_EVERY_S + 0.25
        clicks, _ = click_train(ROOM_RATE, onsets, onsets[-1] + 0.5)
        start = out.play(clicks, ROOM_RATE)
        say(kind="clicks", start_us=start, onsets_s=onsets.tolist())
        out.wait_done()
        time.sleep(gap_s)
        for k, path in enumerate(paths):
            info = audio.probe(path)
            signal = acoustics.apply(np.concatenate(list(audio.iter_mono_blocks(info))),
                                     info.sample_rate, k)
            prepared = out.prepare(signal, info.sample_rate)
            start = out.play(prepared)
            say(kind="clip", path=path, start_us=start, duration_s=len(signal) / info.sample_rate)
            out.wait_done()
            time.sleep(gap_s)
        say(kind="done", xruns=out.report().xruns)


# --- the bench ----------------------------------------------------------------------------
def _connect_input(room_name: str) -> None:
    """Feed live mode's input port from the player's output (system:capture is silent)."""
    from gridcast.agent.audio.room import import_jack

    jack = import_jack()
    client = jack.Client("gridcast-bench-patch", no_start_server=True, servername=room_name)
    try:
        ins = [p.name for p in client.get_all_connections("system:capture_1")]
        outs = [p.name for p in client.get_all_connections("system:playback_1")]
        if not ins or not outs:
            raise RuntimeError(f"room ports not found: input {ins}, player {outs}")
        for port in ins:
            client.disconnect("system:capture_1", port)
            client.connect(outs[0], port)
    finally:
        client.close()


def _broker_delay_ms(host: str, port: int, n: int = 50) -> float:
    """Median publish-to-delivery time through the broker (what a flash command costs)."""
    import paho.mqtt.client as mqtt

    from gridcast.agent.clock import now_us

    got: list[float] = []
    done = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((now_us() - int(msg.payload)) / 1000)
        if len(got) >= n:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect(host, port)
    client.subscribe("gridcast-bench/ping", qos=0)
    client.loop_start()
    time.sleep(0.3)
    for _ in range(n):
        client.publish("gridcast-bench/ping", str(now_us()), qos=0)
        time.sleep(0.01)
    done.wait(5)
    client.loop_stop()
    client.disconnect()
    return float(np.median(got)) if got else float("nan")


def _calibrate(blocks: list[tuple[np.ndarray, int]], heard_us, clicks: dict) -> float:
    """Input offset (µs) that puts the heard clicks on the clicks' scheduled times."""
    from gridcast.agent.audio.clicks import find_onsets

    first = blocks[0][1]
    samples = np.concatenate([b for b, _ in blocks])
    onsets = find_onsets(samples, ROOM_RATE)
    heard = np.array([heard_us(first + o) for o in onsets])
    expected = clicks["start_us"] + np.asarray(clicks["onsets_s"]) * 1e6
    diffs = [e - heard[np.argmin(np.abs(heard - e))] for e in expected if len(heard)]
    diffs = [d for d in diffs if abs(d) < 100_000]
    if len(diffs) < CLICKS // 2:
        raise RuntimeError(f"calibration: {len(diffs)} of {CLICKS} clicks heard")
    return float(np.median(diffs))


async def _run(args: argparse.Namespace, clips: list, folder: str) -> dict:
    from gridcast.agent.audio.room import VirtualRoom
    from gridcast.agent.broker import Mosquitto
    from gridcast.agent.live_mode import LiveConfig, LiveMode
    from gridcast.agent.simulation.devices import Simulator
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.tracker_beat_source import TrackerBeatSource
    from gridcast.agent.transport import open_transport

    with VirtualRoom(ROOM_RATE, ROOM_PERIOD) as room, \
            Mosquitto(folder=str(Path(folder) / "broker")) as broker:
        sim = Simulator(args.devices, f"127.0.0.1:{broker.port}", secrets.token_bytes(32),
                        str(Path(folder) / "sim"), skews_ppm=[0, 100, -100], prefix="live")
        sim.start()
        ids = [d.id for d in sim.devices]
        tracker: list = []
        taps: list[tuple[np.ndarray, int]] = []
        tapping = [True]
        source = TrackerBeatSource(ROOM_RATE, coast_s=args.coast_s, on_beat=tracker.append,
                                   find_bars=not args.tracker_bars,
                                   bar_worker=not args.bar_reads_inline)
        feed = source.feed
        feed_ms: list[float] = []

        def tapped_feed(block, first, heard_us):  # keep the calibration clicks' audio
            if tapping[0]:
                taps.append((np.array(block), first))
                return feed(block, first, heard_us)
            began = time.perf_counter()
            events = feed(block, first, heard_us)
            feed_ms.append((time.perf_counter() - began) * 1000)
            return events

        source.feed = tapped_feed  # type: ignore[method-assign]
        player_proc = None
        try:
            async with open_transport(broker.url) as transport:
                responder = SyncResponder(transport)
                responder.start()
                await transport.wait_online(ids, timeout_s=60)
                net_ms = await asyncio.to_thread(_broker_delay_ms, "127.0.0.1", broker.port)
                await asyncio.sleep(args.warmup_s)  # clock sync converges
                player_proc = subprocess.Popen(
                    [sys.executable, __file__, "--player", room.output_device, "--gap-s",
                     str(args.gap_s), *acoustics_args(args), *[c.audio_path for c in clips]],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                assert player_proc.stdout is not None and player_proc.stdin is not None
                ready = json.loads(await asyncio.to_thread(player_proc.stdout.readline))
                assert ready["kind"] == "ready", ready
                mode = LiveMode(LiveConfig(source="input", input_device=room.output_device,
                                           rate=ROOM_RATE, coast_s=args.coast_s),
                                source=source).open()
                _connect_input(room.name)
                stop = asyncio.Event()
                # None: broadcast (one publish per message, as a show with every device)
                task = asyncio.create_task(mode.run(transport, None, stop))
                player_proc.stdin.write("go\n")
                player_proc.stdin.flush()
                records = []
                presses: list[asyncio.Task] = []
                by_name = {Path(c.audio_path).name: c for c in clips}
                cpu0 = wall0 = 0.0
                while True:
                    line = await asyncio.to_thread(player_proc.stdout.readline)
                    if not line:
                        break
                    record = json.loads(line)
                    if record["kind"] == "clicks":
                        await asyncio.sleep(CLICKS * CLICK_EVERY_S + 0.5
                                            - (time.time() - record["start_us"] / 1e6))
                        tapping[0] = False
                        offset = _calibrate(taps, mode.input.heard_us, record)
                        mode.input.offset_us = offset
                        taps.clear()
                        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                        wall0 = time.monotonic()
                        if not args.json:
                            print(f"input offset {offset / 1000:.2f} ms; net {net_ms:.2f} ms",
                                  file=sys.stderr)
                    elif record["kind"] == "clip":
                        records.append(record)
                        clip = by_name[Path(record["path"]).name]
                        press = downbeat_press(args.downbeat_press, clip, len(records) - 1)
                        if press:  # the operator presses on the one as they hear it
                            presses.append(asyncio.create_task(_press(
                                mode, record["start_us"] + press[0] * 1e6, press[1])))
                        if args.tempo_hint:  # the operator sets the track's BPM as it starts
                            mode.set_tempo_hint(tempo_hint(args.tempo_hint,
                                                           by_name[Path(record["path"]).name]))
                        if not args.json:
                            print(f"{len(records)}/{len(clips)} {Path(record['path']).stem} "
                                  f"{mode.status()['state']}", file=sys.stderr)
                    elif record["kind"] == "done":
                        break
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                wall = time.monotonic() - wall0
                cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)  # type: ignore[union-attr]
                status = mode.status()
                status["refused_presses"] = sum([await p for p in presses])
                await asyncio.sleep(1.0)
                stop.set()
                await task
                await asyncio.sleep(1.0)  # the last frames are written
                await responder.stop()
        finally:
            if player_proc is not None and player_proc.poll() is None:
                player_proc.kill()
                player_proc.wait()
            sim.stop()
        leds, led_bibs = {}, {}
        for dev in sim.devices:
            path = Path(dev.led_log)
            lines = path.read_text().splitlines() if path.exists() else []
            shown = sorted((json.loads(x) for x in lines if x.strip()),
                           key=lambda line: line["true_time_us"])
            leds[dev.id] = np.array([line["true_time_us"] for line in shown], dtype=float)
            led_bibs[dev.id] = np.array([line.get("bar_pos", 0) for line in shown],
                                        dtype=np.int64)
    keep_raw(args, clips, records, leds, tracker, net_ms)
    result = score(clips, records, leds, tracker, net_ms, status,
                   cpu_pct=100 * cpu_s / max(wall, 1e-9), input_offset_us=offset,
                   led_bibs=led_bibs)
    if feed_ms:
        result["reader_block_ms"] = {name: round(float(np.percentile(feed_ms, q)), 2)
                                     for name, q in (("p50", 50), ("p99", 99), ("max", 100))}
    result["bar_reads"] = "reader" if args.bar_reads_inline else "worker"
    return result


async def _press(mode, at_us: float, beats_per_bar: int) -> int:
    """The operator's downbeat press at ``at_us`` (agent µs); 1 if it was refused."""
    from gridcast.agent.clock import now_us
    from gridcast.agent.live_mode import LiveModeError

    await asyncio.sleep(max(0.0, (at_us - now_us()) / 1e6))
    try:
        mode.set_downbeat(round(at_us), beats_per_bar)
    except LiveModeError:
        return 1
    return 0


def manifest_where(set_dir: str, clips: list, conditions: list[str]) -> list:
    """The clips whose MANIFEST.tsv row meets every COLUMN=VALUE condition."""
    import csv

    path = Path(set_dir) / "MANIFEST.tsv"
    if not path.is_file():
        raise ValueError(f"--where: {path} does not exist (a composed corpus writes one)")
    with open(path, newline="") as f:
        rows = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    columns = next(iter(rows.values()), {}).keys()

    def same(have: str, want: str) -> bool:
        try:
            return float(have) == float(want)
        except ValueError:
            return have == want

    for condition in conditions:
        column, sep, want = condition.partition("=")
        if not sep or column not in columns:
            raise ValueError(f"--where {condition!r}: give COLUMN=VALUE with a column of "
                             f"{path} ({', '.join(columns)})")
        clips = [c for c in clips if c.id in rows and same(rows[c.id][column], want)]
    if not clips:
        raise ValueError(f"--where {' '.join(conditions)}: no clip of {set_dir} matches")
    return clips


def keep_raw(args: argparse.Namespace, clips: list, records: list[dict], leds: dict,
             tracker: list, net_ms: float) -> None:
    """Everything the figures come from, for a closer look: ``--raw`` writes it,
    ``--plot`` draws it (bench/live_plot.py)."""
    if not (args.raw or args.plot):
        return
    raw = {"records": records, "leds": {k: v.tolist() for k, v in leds.items()},
           "tracker": [[b.heard_us, b.decided_us, b.beat_in_bar, b.bpm] for b in tracker],
           "net_ms": net_ms}
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(raw, f)
    if args.plot:
        from bench.live_plot import render

        where = "replay" if args.replay else "the room"
        render(raw, clips, args.plot, title=f"live mode in {where}, {Path(args.set_dir).name}")


def cost(args: argparse.Namespace, clips: list, folder: str) -> dict:
    """CPU of ``gridcast live`` alone (its own process) while the player plays clips into it."""
    from gridcast.agent.audio.room import VirtualRoom
    from gridcast.agent.broker import Mosquitto

    def cpu_s(pid: int, task: str = "") -> float:
        stat = Path(f"/proc/{pid}{task}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads_cpu_s(pid: int) -> dict[str, float]:
        # CPU per thread name (the asyncio loop is the process's own name, python)
        out: dict[str, float] = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                name = (task / "comm").read_text().strip()
                out[name] = out.get(name, 0.0) + cpu_s(pid, f"/task/{task.name}")
        return out

    with VirtualRoom(ROOM_RATE, ROOM_PERIOD) as room, \
            Mosquitto(folder=str(Path(folder) / "broker")) as broker:
        player_proc = subprocess.Popen(
            [sys.executable, __file__, "--player", room.output_device, "--gap-s", "0",
             *[c.audio_path for c in clips]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        assert player_proc.stdout is not None and player_proc.stdin is not None
        assert json.loads(player_proc.stdout.readline())["kind"] == "ready"
        live = subprocess.Popen(
            [sys.executable, "-m", "gridcast.host.cli", "live", "--broker", broker.url,
             "--input", room.output_device, "--rate", str(ROOM_RATE), "--seconds",
             str(args.cost + 5), "--json", *(["--bars", "tracker"] if args.tracker_bars else [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until its input port exists
                try:
                    _connect_input(room.name)
                    break
                except RuntimeError:
                    time.sleep(0.2)
            player_proc.stdin.write("go\n")
            player_proc.stdin.flush()
            time.sleep(3)  # the clicks, the first clip starting
            cpu0, wall0 = cpu_s(live.pid), time.monotonic()
            threads0 = threads_cpu_s(live.pid)
            time.sleep(args.cost)
            cpu1, wall1 = cpu_s(live.pid), time.monotonic()
            threads1 = threads_cpu_s(live.pid)
            out, _ = live.communicate(timeout=30)
        finally:
            for proc in (live, player_proc):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    status = json.loads(out) if out.strip() else {}
    return {"seconds": round(wall1 - wall0, 1),
            "live_cpu_pct": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 2),
            "threads_cpu_pct": {name: round(100 * (threads1[name] - threads0.get(name, 0.0))
                                            / (wall1 - wall0), 2) for name in threads1},
            "state": status.get("state"), "tempo_bpm": status.get("tempo_bpm"),
            "overflows": status.get("overflows"), "messages": status.get("messages")}


def tempo_hint(option: str | None, clip) -> float | None:
    """``--tempo-hint``: a BPM for every clip, or ``annotated``: each clip's own (the
    median of its annotated beat gaps), as a DJ who knows the track's BPM sets it."""
    if option is None:
        return None
    if option == "annotated":
        return round(60.0 / float(np.median(np.diff(clip.beats))), 1)
    return float(option)


def downbeat_press(option: float | None, clip, k: int) -> tuple[float, int] | None:
    """``--downbeat-press S``: (when, s into the clip; the bar's length) of the operator's
    press on the annotated downbeat nearest S s, off by a human's error; None without
    the option or the clip's bar annotations."""
    if option is None or clip.beat_in_bar is None or not np.any(clip.beat_in_bar == 1):
        return None
    downs = np.asarray(clip.beats)[clip.beat_in_bar == 1]
    one = float(downs[np.argmin(np.abs(downs - option))])
    return one + float(np.random.default_rng(k).normal(0.0, 0.020)), int(clip.beat_in_bar.max())


def replay_set(args: argparse.Namespace, clips: list) -> dict:
    """The same figures from host/live/replay.py: simulated time, one model device, each
    clip at 44.1 kHz after ``--gap-s`` of silence, ``net_ms`` 5 ms. No room, no firmware:
    faster than real time, for iterating on the model (confirm in the room)."""
    from math import gcd

    from scipy.signal import resample_poly

    from gridcast.agent.tracker_beat_source import HeardBeat
    from gridcast.host.analysis import audio
    from gridcast.host.live.replay import replay

    records: list[dict] = []
    led: list[np.ndarray] = []
    led_bib: list[np.ndarray] = []
    tracker: list = []
    refused = 0
    started = time.process_time()
    for k, clip in enumerate(clips):
        info = audio.probe(clip.audio_path)
        signal = np.concatenate(list(audio.iter_mono_blocks(info)))
        if info.sample_rate != ROOM_RATE:
            g = gcd(ROOM_RATE, info.sample_rate)
            signal = resample_poly(signal, ROOM_RATE // g, info.sample_rate // g)
        signal = args.room.apply(signal, ROOM_RATE, k)
        gap = np.zeros(int(args.gap_s * ROOM_RATE), np.float32)
        press = downbeat_press(args.downbeat_press, clip, k)
        run = replay(np.concatenate([gap, signal.astype(np.float32)]), ROOM_RATE,
                     network_ms=5.0, coast_s=args.coast_s,
                     tempo_hint=tempo_hint(args.tempo_hint, clip),
                     presses=[(args.gap_s + press[0], press[1])] if press else None,
                     find_bars=not args.tracker_bars,
                     input_latency_ms=args.input_latency_ms, poll_ms=args.poll_ms)
        refused += run.refused_presses
        base = k * 1e9  # each clip on its own stretch of the timeline
        start = base + args.gap_s * 1e6
        records.append({"path": clip.audio_path, "start_us": start,
                        "duration_s": len(signal) / ROOM_RATE})
        led.append(run.led_us + base)
        led_bib.append(run.led_bib)
        tracker += [HeardBeat(b.heard_us + base, int(b.decided_us + base), b.beat_in_bar,
                              b.bpm, b.confidence) for b in run.tracker]
    cpu_s = time.process_time() - started
    audio_s = sum(r["duration_s"] + args.gap_s for r in records)
    leds = {"model": np.concatenate(led)}
    keep_raw(args, clips, records, leds, tracker, 5.0)
    result = score(clips, records, leds, tracker, 5.0, {},
                   cpu_pct=100 * cpu_s / audio_s, input_offset_us=0.0,
                   led_bibs={"model": np.concatenate(led_bib)})
    result["replay"] = True
    if args.downbeat_press is not None:
        result["refused_presses"] = refused
    return result


def score(clips: list, records: list[dict], leds: dict, tracker: list, net_ms: float,
          status: dict, cpu_pct: float, input_offset_us: float,
          led_bibs: dict | None = None) -> dict:
    from gridcast.host.evaluation.evaluate import score as beat_score
    from gridcast.host.live.realtime import lock_time_s

    by_path = {c.audio_path: c for c in clips}
    heard = np.array([b.heard_us for b in tracker])
    decided = np.array([b.decided_us for b in tracker])
    led_f, trk_f, errors, locks, reactive, rows = [], [], [], [], [], []
    led_down_f: list[float] = []
    trk_locks: list[float] = []
    strict_locks: list[float] = []
    for record in records:
        clip = by_path[record["path"]]
        start, duration = record["start_us"], record["duration_s"]
        ref = np.asarray(clip.beats, dtype=float)

        def in_clip(times_us: np.ndarray, start: float = start,
                    duration: float = duration) -> tuple[np.ndarray, np.ndarray]:
            """The times inside the clip (s from its start, sorted) and their order
            in ``times_us``."""
            s = (times_us - start) / 1e6
            inside = np.flatnonzero((s >= 0) & (s <= duration))
            order = inside[np.argsort(s[inside], kind="stable")]
            return s[order], order

        trk = in_clip(heard)[0]
        trk_dec = (decided[(heard >= start) & (heard <= start + duration * 1e6)] - start) / 1e6
        f_trk = beat_score(ref, None, trk, None)["f_measure"]
        f_leds, clip_locks, clip_strict, f_downs = [], [], [], []
        for name, times in leds.items():
            led, order = in_clip(times)
            f_leds.append(beat_score(ref, None, led, None)["f_measure"])
            if led_bibs is not None and clip.beat_in_bar is not None:
                down = beat_score(ref, np.asarray(clip.beat_in_bar), led,
                                  led_bibs[name][order])["downbeat_f"]
                f_downs.append(float(down) if down is not None else 0.0)
            lock = lock_time_s(ref, led, duration)
            clip_locks.append(lock)
            clip_strict.append(lock_time_s(ref, led, duration, strict=True))
            for beat in ref[ref >= ref[0] + lock]:
                if len(led):
                    error = float(np.min(np.abs(led - beat)))
                    if error <= MATCH_S:
                        errors.append(error * 1000)
        trk_lock = lock_time_s(ref, trk, duration)
        flashes = np.sort(trk_dec) + net_ms / 1000
        for beat in ref[ref >= ref[0] + trk_lock]:
            if len(flashes):
                error = float(np.min(np.abs(flashes - beat)))
                if error <= MATCH_S:
                    reactive.append(error * 1000)
        led_f.append(float(np.mean(f_leds)))
        if f_downs:
            led_down_f.append(float(np.mean(f_downs)))
        trk_f.append(f_trk)
        locks.append(float(np.median(clip_locks)))
        strict_locks.append(float(np.median(clip_strict)))
        trk_locks.append(trk_lock)
        rows.append({"clip": Path(record["path"]).stem, "led_f": round(led_f[-1], 3),
                     **({"led_downbeat_f": round(led_down_f[-1], 3)} if f_downs else {}),
                     "tracker_f": round(f_trk, 3), "lock_s": round(locks[-1], 2),
                     "lock_strict_s": round(strict_locks[-1], 2),
                     "tracker_lock_s": round(trk_lock, 2)})

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 2) if values else None

    return {
        "clips": len(records),
        "led_f": round(float(np.mean(led_f)), 4) if led_f else None,
        "tracker_f": round(float(np.mean(trk_f)), 4) if trk_f else None,
        **({"led_downbeat_f": round(float(np.mean(led_down_f)), 4)} if led_down_f else {}),
        "median_abs_ms": pct(errors, 50),
        "p90_abs_ms": pct(errors, 90),
        "lock_s_median": round(statistics.median(locks), 2) if locks else None,
        "lock_strict_s_median": (round(statistics.median(strict_locks), 2) if strict_locks
                                 else None),
        "tracker_lock_s_median": round(statistics.median(trk_locks), 2) if trk_locks else None,
        "reactive_median_abs_ms": pct(reactive, 50),
        "net_ms": round(net_ms, 2),
        "input_offset_ms": round(input_offset_us / 1000, 2),
        "cpu_pct": round(cpu_pct, 1),
        "overflows": status.get("overflows", 0),
        **({"refused_presses": status["refused_presses"]} if "refused_presses" in status
           else {}),
        "devices": len(leds),
        "per_clip": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", nargs="?")
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=int, default=0, help="the first N clips (0: all)")
    parser.add_argument("--where", metavar="COLUMN=VALUE", action="append", default=[],
                        help="only the clips whose row in SET_DIR/MANIFEST.tsv has that value "
                             "(numbers compared as numbers; repeat to narrow), e.g. "
                             "humanized_ms=0 on a composed corpus")
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=20.0, help="clock sync first")
    parser.add_argument("--gap-s", type=float, default=4.0, help="silence between clips")
    parser.add_argument("--coast-s", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--raw", metavar="FILE", help="also write the LED frames, tracker "
                        "beats and clip starts as JSON")
    parser.add_argument("--plot", metavar="PNG", help="also draw where each clip locked and "
                        "how every beat landed (bench/live_plot.py)")
    parser.add_argument("--cost", type=float, metavar="SECONDS", help="measure the CPU of "
                        "`gridcast live` alone for this long instead (no devices)")
    parser.add_argument("--replay", action="store_true", help="simulated time instead of the "
                        "room (host/live/replay.py): fast, for iterating on the model")
    parser.add_argument("--tempo-hint", metavar="BPM|annotated", help="the operator's "
                        "tempo hint (gridcast live --tempo-hint): one for every clip, or each "
                        "clip's annotated tempo, set as the clip starts")
    parser.add_argument("--tracker-bars", action="store_true", help="the tracker's own bar "
                        "guess instead of the bar found in the audio (agent/live_bars.py)")
    parser.add_argument("--input-latency-ms", type=float, default=0.0, help="with --replay: "
                        "each block reaches live mode this long after its last sample was heard")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="with --replay: the "
                        "sender's poll period")
    parser.add_argument("--bar-reads-inline", action="store_true", help="in the room, read "
                        "the bar windows in the input's reader thread, not live mode's worker")
    parser.add_argument("--downbeat-press", type=float, metavar="SECONDS", help="the "
                        "operator presses on the one once per clip: at the annotated downbeat "
                        "nearest this far into it (with a human's 20 ms error)")
    parser.add_argument("--reverb-s", type=float, default=0.0, help="a microphone in a "
                        "reverberant room: its RT60 in seconds (0: a line from the mixer)")
    parser.add_argument("--drr-db", type=float, default=0.0, help="with --reverb-s: the "
                        "direct sound this many dB above the reverberation")
    parser.add_argument("--crowd-snr-db", type=float, help="a crowd talking and clapping "
                        "this many dB below the music at the microphone")
    parser.add_argument("--room-seed", type=int, default=0, help="another room and crowd")
    parser.add_argument("--player", metavar="ROOM_DEVICE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        args.room = acoustics(args)  # built once: the player and replay use this one
    except ValueError as e:
        parser.error(str(e))
    # SIGTERM unwinds like Ctrl-C, so the room, the broker and the devices are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.player:
        player(args.player, ([args.set_dir] if args.set_dir else []) + args.paths, args.gap_s,
               args.room)
        return
    from gridcast.host.evaluation.evaluate import load_dataset

    clips = load_dataset(args.set_dir)
    if args.where:
        try:
            clips = manifest_where(args.set_dir, clips, args.where)
        except ValueError as e:
            parser.error(str(e))
    if args.clips:
        clips = clips[:args.clips]
    if args.replay:
        result = replay_set(args, clips)
    else:
        with tempfile.TemporaryDirectory() as folder:
            if args.cost:
                print(json.dumps(cost(args, clips, folder)))
                return
            result = asyncio.run(_run(args, clips, folder))
    if args.tempo_hint:
        result["tempo_hint"] = args.tempo_hint
    result["bars"] = "tracker" if args.tracker_bars else "audio"
    if not args.room.dry:
        result["room_acoustics"] = args.room.describe()
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "per_clip"}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

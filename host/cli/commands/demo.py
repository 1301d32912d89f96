"""``gridcast demo``: the whole system on one machine, with audio it makes itself.

1. Generate a song with known beats, analyze it, score the beat map, plot it.
2. Sign it into a bundle with a fresh key.
3. Start a broker over TLS only (mosquitto when installed, else an embedded one; a
   throwaway site CA in the output folder's broker/tls), the agent
   (collector into SQLite, registry, clock-sync responder) and three simulated
   devices running the real firmware in MicroPython, one of them with a clock
   150 ppm fast.
4. Deploy, let the clocks converge, play the song with its lights through the show
   player into the room (``--room``: a sound card where there is one, else a virtual
   room: a private JACK server whose speaker feed is recorded, host/cli/demo_room.py),
   and wait for the devices' drift reports (they report with hindsight).
5. Print a table per device (reported drift, the true LED error the simulator
   measured, and in the virtual room the light-to-sound error: LED frame minus the
   time its beat was heard) and write a drift PNG. It exits 1 when a beat's aim (the
   error without the delay this machine's scheduler added, logged per beat by the
   simulated board) is off, or the machine held up many beats (docs/firmware.md).

``--no-devices`` stops after step 1.

Everything it writes (audio, beat map, plots, key, bundle, the agent's database, the
devices' folders with their firmware copies, the broker's files) goes into one folder:
``--out``, by default ``~/.cache/gridcast/demo`` (``$XDG_CACHE_HOME`` and
``$GRIDCAST_CACHE_DIR`` move it), so a checkout it runs from stays as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from typing import Any

from gridcast.host.cli import output
from gridcast.host.cli.demo_room import RECORDER_LEAD_S, ROOMS, open_room

HELP = "the end-to-end demo on generated audio"

SKEWS_PPM = [10, -20, 150]
HINDSIGHT_S = 34  # devices report a beat's drift 31 s after it fired (firmware/telemetry.py)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="folder for the demo's files (default "
                   "~/.cache/gridcast/demo, under $XDG_CACHE_HOME or $GRIDCAST_CACHE_DIR if set)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the demo song")
    p.add_argument("--sync-s", type=float, default=20.0, metavar="S",
                   help="seconds the device clocks get to converge before playing")
    p.add_argument("--max-drift-ms", type=float, default=1.0, metavar="MS",
                   help="fail (exit 1) when the p99 of the devices' beats' aim (true error "
                   "without the delay this machine added) is above this, or this machine "
                   "held up over 5%% of the beats by more than 1 ms")
    p.add_argument("--max-sound-ms", type=float, default=2.0, metavar="MS",
                   help="fail (exit 1) when the p99 of the light-to-sound aim is above this "
                   "(virtual room only; judged as --max-drift-ms)")
    p.add_argument("--room", choices=ROOMS, default="auto",
                   help="where the song is heard: auto (a sound card if there is one, else "
                   "the virtual JACK room), jack, soundcard, or none (lights only)")
    p.add_argument("--no-devices", action="store_true",
                   help="only generate, analyze and plot the song (no broker, no devices)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def default_out() -> str:
    """Where the demo writes unless told: beside the analysis cache, outside any checkout."""
    base = os.environ.get("GRIDCAST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gridcast")
    return os.path.join(base, "demo")


def _analyze(args: argparse.Namespace) -> dict:
    import soundfile as sf

    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.beatmaps import beatmap, corrections, plot
    from gridcast.host.evaluation import demo_audio, evaluate
    from gridcast.host.library import batch

    wav = os.path.join(args.out, "demo-song.wav")
    signal, beats, bib = demo_audio.render(seconds=args.seconds)
    sf.write(wav, signal, demo_audio.SAMPLE_RATE)
    output.info(f"generated {wav} ({args.seconds:.0f} s, {len(beats)} beats)")
    job = batch.Job(wav, os.path.join(args.out, "demo-song.beatmap.json"))
    outcome = batch.run_job(job, AnalyzerParams(), corrections.Corrections())
    if outcome.status == "failed":
        raise RuntimeError(outcome.message)
    bm = beatmap.load(job.out_path)
    scores = evaluate.score(beats, bib, bm.beats, bm.beat_in_bar)
    png = plot.render(bm, os.path.join(args.out, "demo-song.png"), wav)
    output.info(f"beat map {job.out_path}: {len(bm.beats)} beats, {bm.tempo_bpm:.1f} BPM; "
                f"against the generated truth beat F {scores['f_measure']:.3f}, downbeat F "
                f"{scores['downbeat_f']:.3f}; plot {png}")
    return {"audio": wav, "beatmap": job.out_path, "plot": png,
            "tempo_bpm": round(bm.tempo_bpm, 2), "beats": len(bm.beats), "meter": bm.meter,
            "scores": {k: (round(v, 4) if v is not None else None) for k, v in scores.items()}}


def _bundle(args: argparse.Namespace, beatmap_path: str) -> tuple[str, bytes, str, int]:
    from gridcast.host.beatmaps import beatmap, bundling
    from gridcast.protocol import bundle_builder, keys

    key_path = os.path.join(args.out, "demo.key")
    key = keys.generate(key_path, overwrite=True)
    bm = beatmap.load(beatmap_path)
    src = bundling.source_from_map(bm, track_id="demo-song")
    data = bundle_builder.build(src, key, keys.key_id(key))
    path = os.path.join(args.out, "demo-song.gcb")
    with open(path, "wb") as f:
        f.write(data)
    return key_path, data, src.track_id, src.bundle_version


async def _wait(seconds: float, label: str) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    show = output.err.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                  console=output.err, disable=not show, transient=True) as bar:
        task = bar.add_task(label, total=seconds)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.5, left))
            bar.update(task, completed=seconds - max(0.0, left))
    if not show:
        output.info(f"{label}: done")


async def _devices(args: argparse.Namespace, analysis: dict) -> dict:
    from gridcast.agent import deploy, playback
    from gridcast.agent.broker import open_broker
    from gridcast.agent.command_signer import CommandSigner
    from gridcast.agent.config import AgentConfig
    from gridcast.agent.core import AgentCore
    from gridcast.agent.simulation.broker_witness import BrokerWitness
    from gridcast.agent.simulation.devices import Simulator
    from gridcast.agent.simulation.led_report import scored_beats, timing_problems
    from gridcast.protocol import keys

    key_path, data, track_id, version = _bundle(args, analysis["beatmap"])
    key = keys.load(key_path)
    db = os.path.join(args.out, "demo.db")
    for stale in (db, db + "-wal", db + "-shm"):
        if os.path.exists(stale):
            os.remove(stale)
    state = os.path.join(args.out, "devices")
    shutil.rmtree(state, ignore_errors=True)
    with open_room(args.room) as room, open_broker(os.path.join(args.out, "broker"),
                                                   tls=True) as broker:
        output.info(f"broker: {broker.kind} on {broker.device_broker} (TLS, CA "
                    f"{broker.ca_file})")
        config = AgentConfig(broker=broker.url, database=f"sqlite://{db}",
                             alert_threshold_ms=args.max_drift_ms,
                             shared_subscription=broker.supports_shared_subscriptions)
        core = AgentCore(config)
        # Commands and sync answers sealed with keys derived from the bundle key, as the
        # devices derive them (docs/protocol.md 11).
        core.transport.signer = CommandSigner(key)
        sim = Simulator(3, broker.url, key, state, SKEWS_PPM, prefix="demo")  # TLS, its CA
        ids = [d.id for d in sim.devices]
        witness = BrokerWitness(broker.url)
        from gridcast.agent.broker_log import BrokerLogWatcher

        # A device that fails TLS reaches only the broker: its log says why.
        broker_log = (BrokerLogWatcher(os.path.join(broker.folder, "mosquitto.log")).start()
                      if hasattr(broker, "folder") else None)
        witness.start()
        await core.start()
        started_us = time.time_ns() // 1000
        sim.start()
        try:
            assert core.transport is not None
            await core.transport.wait_online(ids, timeout_s=60)
            online = ", ".join(f"{d.id} ({d.skew_ppm:+d} ppm)" for d in sim.devices)
            output.info(f"devices online: {online}")
            results = await deploy.deploy(core.transport, ids, data, track_id, version)
            for r in results:
                (output.info if r.ok else output.error)(
                    f"{r.id}: {'active ' + track_id + f' v{version}' if r.ok else r.error} "
                    f"({r.seconds:.2f} s)")
            sound: dict = {"xruns": None, "devices": {}}
            room.start_recording(RECORDER_LEAD_S + args.sync_s + args.seconds + 60)
            await _wait(max(args.sync_s, RECORDER_LEAD_S if room.name else 0.0),
                        "letting the device clocks converge")
            if room.kind is None:
                start_us = await playback.play(core.transport, ids, track_id, lead_s=2.0)
                output.info(f"playing {track_id} on {len(ids)} devices (no sound: --room none)")
                await _wait(2.0 + args.seconds, "playing")
                await playback.stop(core.transport, ids)
            else:
                start_us = time.time_ns() // 1000
                sound = await room.play(core.transport, ids, _show_track(analysis, data,
                                                                         track_id, version),
                                        *_song(analysis), sim.devices, _wait)
            await _wait(HINDSIGHT_S, "collecting drift reports")
        finally:
            await core.stop()
            core.rollup.flush()
            sim.stop()
            witness.stop()
            if broker_log is not None:
                broker_log.stop()
        rows = [_device_row(dev, witness, core.store, started_us, f"{track_id} v{version}")
                | _sound_figures(sound["devices"].get(dev.id) if room.kind else None)
                for dev in sim.devices]
        # Judged over the devices together (docs/firmware.md): each beat's aim, and how
        # many beats this machine held up (the devices share its cores).
        errors, delays = scored_beats(sim.devices, witness)
        problems = timing_problems(errors, delays, args.max_drift_ms)
        heard_errors, heard_delays = sound.get("scored") or ([], [])
        sound_problems = (timing_problems(heard_errors, heard_delays, args.max_sound_ms)
                          if heard_errors else [])
        from gridcast.agent import drift_plot

        png = drift_plot.render(core.store, os.path.join(args.out, "demo-drift.png"), ids,
                                started_us, args.max_drift_ms,
                                title=f"gridcast demo: {track_id} on {len(ids)} devices")
        core.store.close()
    return {"broker": broker.device_broker, "broker_kind": broker.kind, "database": db,
            "room": room.kind,
            "audio_xruns": sound["xruns"] if room.kind else None,
            "bundle": os.path.join(args.out, "demo-song.gcb"), "play_start_us": start_us,
            "drift_plot": png, "alerts": core.alerts.sent, "devices": rows,
            "timing_problems": problems, "sound_timing_problems": sound_problems}


def _song(analysis: dict) -> tuple[Any, float]:
    import soundfile as sf

    samples, rate = sf.read(analysis["audio"], dtype="float32", always_2d=False)
    return samples, float(rate)


def _show_track(analysis: dict, bundle: bytes, track_id: str, version: int):
    from gridcast.agent.show.set_list import ShowTrack
    from gridcast.host.beatmaps import beatmap

    beats = beatmap.load(analysis["beatmap"]).beats.tolist()
    return ShowTrack(track_id, track_id, bundle, version, beats, lambda: _song(analysis))


def _sound_figures(figures: dict | None) -> dict:
    """Light against sound for one device (None outside the virtual room)."""
    figures = figures or {}
    return {"sound_error_p50_ms": figures.get("sound_error_p50_ms"),
            "sound_error_p99_ms": figures.get("sound_error_p99_ms"),
            "sound_beats": figures.get("sound_beats"),
            # beats left out because JACK's clock (the room's truth) was settling after an xrun
            "sound_unsettled": figures.get("unsettled_frames")}


def _device_row(dev, witness, store, since_us: int, bundle_label: str) -> dict:
    """Reported drift from the agent's database; true LED error from the simulator's log."""
    from gridcast.agent import drift_stats
    from gridcast.agent.simulation.led_report import device_report

    report, _ = device_report(dev, witness)
    drift = [d for _, d in store.drift_samples(dev.id, since_us)]
    record = store.device(dev.id)
    return {
        "id": dev.id,
        "skew_ppm": dev.skew_ppm,
        # the device's own store and the status it published both name the bundle
        "bundle_active": bool(report["active_bundle"] == bundle_label and record is not None
                              and f"{record.active_track} v{record.bundle_version}"
                              == bundle_label),
        "drift_p50_ms": drift_stats.percentile_ms(drift, 50),
        "drift_p99_ms": drift_stats.percentile_ms(drift, 99),
        "true_error_p50_ms": report["true_error_p50_ms"],
        "true_error_p99_ms": report["true_error_p99_ms"],
        # the error without this machine's delays, and the beats it held up over 1 ms
        "aim_error_p99_ms": report["aim_error_p99_ms"],
        # what the device reported of each beat against the simulator's measurement: the
        # device's clock-sync error, which it cannot see itself
        "drift_vs_true_p99_ms": report["drift_vs_true_p99_ms"],
        "held_up_beats": report["held_up_beats"],
        "delay_max_ms": report["delay_max_ms"],
        "beats_shown": report["beats"],
        "samples": len(drift),
        "lost": store.lost(dev.id),
    }


def _pair(p50: float | None, p99: float | None) -> str:
    return "-" if p50 is None or p99 is None else f"{p50:.2f}/{p99:.2f}"


def _print_table(result: dict) -> None:
    from rich import box
    from rich.table import Table

    output.info("per device, in ms (p50/p99): drift = what it reported, true = its LED "
                "against the agent's timeline, sound = its LED against the sound heard")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # Eight columns, so the table reads in an 80-column terminal.
    for col in ("device", "ppm", "bundle", "drift", "true", "sound", "beats", "lost"):
        table.add_column(col, justify="left" if col == "device" else "right", no_wrap=True)
    for d in result["devices"]:
        table.add_row(d["id"], f"{d['skew_ppm']:+d}", "active" if d["bundle_active"] else "NO",
                      _pair(d["drift_p50_ms"], d["drift_p99_ms"]),
                      _pair(d["true_error_p50_ms"], d["true_error_p99_ms"]),
                      _pair(d["sound_error_p50_ms"], d["sound_error_p99_ms"]),
                      str(d["sound_beats"] or d["beats_shown"]), str(d["lost"]))
    output.out.print(table)
    if result.get("room") != "jack":
        output.info("light against sound is measured in the virtual room only "
                    f"(room: {result.get('room') or 'none'}; --room jack)")


def run(args: argparse.Namespace) -> int:
    args.out = os.path.abspath(args.out or default_out())
    os.makedirs(args.out, exist_ok=True)
    analysis = _analyze(args)
    result: dict = {"out": args.out, "analysis": analysis}
    if not args.no_devices:
        result |= asyncio.run(_devices(args, analysis))
    if args.json:
        output.print_json(result)
    elif "devices" in result:
        _print_table(result)
    plots = [analysis["plot"]] + ([result["drift_plot"]] if "drift_plot" in result else [])
    output.info(f"the demo's files are in {args.out}; plots: {', '.join(plots)}"
                + (f"; agent database: {result['database']}" if "database" in result else ""))
    held = sum(d["held_up_beats"] for d in result.get("devices", []))
    if held:
        output.warn(f"{held} beats were held up over 1 ms by this machine (at most "
                    f"{max(d['delay_max_ms'] or 0 for d in result['devices']):.1f} ms): the "
                    "simulated devices share its cores; each beat's aim is judged without "
                    "that delay (aim p99 " + ", ".join(
                        f"{d['id']} {d['aim_error_p99_ms']} ms" for d in result["devices"])
                    + ")")
    bad = [d["id"] for d in result.get("devices", []) if not d["bundle_active"]
           or d["true_error_p99_ms"] is None]
    timing = result.get("timing_problems", [])
    measured = [d for d in result.get("devices", []) if result.get("room") == "jack"
                and (d["sound_beats"] or not d["sound_unsettled"])]
    if result.get("room") == "jack" and len(measured) < len(result["devices"]):
        output.warn(f"audio xruns {result['audio_xruns']} disturbed the virtual room's clock: "
                    "light against sound is not measured for devices whose every beat fell "
                    "in a settling window (a loaded machine; run the demo again)")
    late = [d["id"] for d in measured if not d["sound_beats"]]
    sound_timing = result.get("sound_timing_problems", [])
    if bad:
        output.error(f"devices without the bundle or without a beat shown: {', '.join(bad)}")
    if timing:
        output.error(f"the devices' beats against the agent's timeline (bound "
                     f"{args.max_drift_ms} ms): {'; '.join(timing)}")
    if late:
        output.error(f"no beat of these devices was heard: {', '.join(late)}")
    if sound_timing:
        output.error(f"light against sound (bound {args.max_sound_ms} ms): "
                     f"{'; '.join(sound_timing)}")
    return 1 if bad or timing or late or sound_timing else 0

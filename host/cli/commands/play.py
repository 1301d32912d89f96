"""``gridcast play``: the show player (audio files, folders, M3U lists: sound and lights
together, docs/player.md), or a bundle / track id on the devices alone, at an instant of
the agent's clock."""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from gridcast.host.cli import bundle_file, output
from gridcast.host.cli.options import add_target_arguments, signer, start_time_us
from gridcast.protocol import bundle_reader
from gridcast.protocol.errors import GridcastError

HELP = "play music with its lights (or a bundle on the devices alone), on the agent's clock"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("track", nargs="+", help="audio file(s), folder, .m3u/.m3u8 list (sound "
                   "and lights), or one bundle file or track id (lights only)")
    add_target_arguments(p)
    p.add_argument("--output", default=None, help="audio output device (name or index; "
                   "default: the system's)")
    p.add_argument("--maps", default=None, help="folder for beat maps of audio inputs "
                   "(default: ~/.cache/gridcast/show)")
    p.add_argument("--room-latency-ms", type=float, default=None,
                   help="speakers to listeners, added to the output's DAC latency (default: "
                   "room_latency_ms from --config, which gridcast calibrate stores)")
    p.add_argument("--config", default=None, help="the agent's TOML config to read "
                   "room_latency_ms from (default gridcast-agent.toml when it exists; "
                   "GRIDCAST_ROOM_LATENCY_MS overrides)")
    p.add_argument("--no-audio", action="store_true",
                   help="audio inputs: analyze, bundle and deploy, then play the first "
                        "track's lights without sound")
    p.add_argument("--jobs", "-j", type=int, default=1, help="analysis workers")
    p.add_argument("--at", help="start: Unix seconds, or +SECONDS from now")
    p.add_argument("--lead", type=float, default=3.0, help="seconds from now when --at is "
                   "not given")
    p.add_argument("--seconds", type=float, default=0, help="play this long, then stop")
    p.add_argument("--live", action="store_true",
                   help="follow the room: the C tracker listens to an audio input and moves "
                        "the grid onto the live beats (TRACK must be the bundle file)")
    p.add_argument("--device", default=None, help="audio input for --live (name or index)")
    p.add_argument("--rate", type=int, default=None, help="input sample rate for --live")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from gridcast.host.library.set_list import is_set_list_input

    others = [t for t in args.track if not is_set_list_input(t)]
    if len(args.track) > 1 and others:
        raise GridcastError(f"{others[0]}: not audio, a folder or an M3U list; several "
                            "inputs make a set list (a bundle or track id plays alone)")
    if not others and not args.live:
        from gridcast.host.cli import show

        return show.run(args)
    if len(args.track) > 1:
        raise GridcastError("--live follows one bundle file")
    args.track = args.track[0]
    return asyncio.run(_play(args))


async def _play(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport

    track = args.track
    grid = None
    if os.path.exists(track):
        data, info = bundle_file.read(track)
        track = info.track_id
        if getattr(args, "live", False):
            grid = _grid_s(data, info)
    elif getattr(args, "live", False):
        raise GridcastError(f"--live needs the bundle file (for its beat grid), not {track!r}")
    async with open_transport(args.broker, signer=signer(args)) as transport:
        responder = SyncResponder(transport)
        responder.start()
        ids = args.to or None
        start = await playback.play(transport, ids, track, start_time_us(args.at), args.lead)
        if not args.json:
            output.info(f"playing {track!r} from {start / 1e6:.6f} (agent clock)"
                        + (f" for {args.seconds:g} s" if args.seconds else ""))
        try:
            if grid is not None:
                from gridcast.agent.live_follow import run_live

                output.info("following the room (Ctrl-C stops)")
                try:
                    stats = await asyncio.to_thread(
                        run_live, transport, ids, grid, start, asyncio.get_running_loop(),
                        device=args.device, rate=args.rate,
                        max_seconds=args.seconds or None)
                    output.info(f"live follow: {stats.matched} of {stats.live_beats} live "
                                f"beats matched, {stats.seeks} grid moves "
                                f"{stats.corrections_ms}")
                finally:
                    await playback.stop(transport, ids)
            elif args.seconds:
                await asyncio.sleep(max(0.0, start / 1e6 - time.time()) + args.seconds)
                await playback.stop(transport, ids)
        finally:
            await responder.stop()
    if args.json:
        output.print_json({"track_id": track, "start_unix_us": start, "devices": ids or "all",
                          "sync_answers": responder.answered})
    return 0


def _grid_s(data: bytes, info: bundle_reader.BundleInfo) -> list[float]:
    """The bundle's beat times in seconds (the grid live follow keeps in phase)."""
    import io

    f = io.BytesIO(data)
    cursor = bundle_reader.BeatCursor(f, info)
    times = [cursor.next_time_us() for _ in range(info.beat_count)]
    return [t / 1e6 for t in times if t is not None]

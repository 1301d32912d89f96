"""``gridcast play`` with audio inputs: analyze and bundle what is missing, then the show.

The set list is played by the agent's ShowPlayer (docs/player.md) on this process's
own MQTT connection, with a clock-sync responder for the devices, on the output
device ``--output``. One line per track ("now playing ..."), a progress line, and a
JSON summary with ``--json``. Ctrl-C stops sound and lights.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gridcast.host.cli import output
from gridcast.host.cli.options import signer
from gridcast.protocol import keys
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.show.player import ShowPlayer
    from gridcast.agent.show.set_list import ShowTrack

DISCOVER_S = 1.5  # retained status and hello messages arrive just after subscribing


def run(args: argparse.Namespace) -> int:
    from gridcast.host.library import batch
    from gridcast.host.library.set_list import audio_paths, show_tracks

    if not args.key_file:
        raise GridcastError("playing audio files needs --key-file (the site key that signs "
                            "their bundles; gridcast keygen makes one)")
    key = keys.load(args.key_file)
    paths = audio_paths(args.track)
    maps = args.maps or os.path.join(os.path.dirname(batch.default_cache_dir()), "show")
    tracks = show_tracks(paths, key, maps, args.jobs, on_line=output.info)
    if not tracks:
        raise GridcastError(f"none of the {len(paths)} files could be analyzed; nothing to play")
    return asyncio.run(_show(args, tracks))


def room_latency_ms(args: argparse.Namespace) -> float:
    """--room-latency-ms, else the agent config's room_latency_ms (gridcast calibrate)."""
    from gridcast.agent import config
    from gridcast.host.cli.commands.calibrate import DEFAULT_CONFIG

    if args.room_latency_ms is not None:
        return float(args.room_latency_ms)
    path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    value = config.load(path).room_latency_ms
    if value:
        output.info(f"room latency {value:.3f} ms (from "
                    f"{path or 'GRIDCAST_ROOM_LATENCY_MS'}; --room-latency-ms overrides)")
    return value


async def _show(args: argparse.Namespace, tracks: list[ShowTrack]) -> int:
    from gridcast.agent import deploy, playback
    from gridcast.agent.show.output import ShowOutput
    from gridcast.agent.show.player import ShowPlayer
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport

    # The output first: a wrong --output is named before anything else happens.
    out = None if args.no_audio else ShowOutput(args.output,
                                                room_latency_ms=room_latency_ms(args))
    async with open_transport(args.broker, signer=signer(args)) as transport:
        responder = SyncResponder(transport)
        responder.start()
        try:
            found = await transport.discover(DISCOVER_S)
            ids = args.to or found
            if not ids:
                output.warn("no device online on the broker: sound only (devices that come "
                            "online join the show)")
            if args.no_audio:
                first = tracks[0]
                results = await deploy.deploy(transport, ids, first.bundle, first.track_id,
                                              first.bundle_version)
                for r in results:
                    if not r.ok:
                        output.warn(r.error)
                start = await playback.play(transport, ids, first.track_id, lead_s=args.lead)
                output.info(f"playing the lights of {first.title} ({first.track_id!r}) from "
                            f"{start / 1e6:.6f} without sound")
                if args.seconds:
                    await asyncio.sleep(max(0.0, start / 1e6 - time.time()) + args.seconds)
                    await playback.stop(transport, ids)
                return 0
            assert out is not None
            with out:
                player = ShowPlayer(transport, ids, out, on_event=_printer(args))
                player.queue(tracks)
                try:
                    await _play_through(player, args.seconds)
                finally:
                    await player.close()
                report = out.report()
        finally:
            await responder.stop()
    summary = {"tracks": [t.title for t in tracks], "skipped": player.skipped,
               "devices": ids, "switches": player.switches, "xruns": report.xruns,
               "drift_ppm": round(report.drift_ppm, 2),
               "first_sound_ms": report.first_sound_latency_ms,
               "light_rate_messages": player.lights.rate_messages,
               "light_seeks": player.lights.seeks}
    if args.json:
        output.print_json(summary)
    else:
        output.info(f"played {len(tracks) - len(player.skipped)} tracks; sound card drift "
                    f"{report.drift_ppm:+.1f} ppm, {report.xruns} xruns")
    return 0


async def _play_through(player: ShowPlayer, seconds: float) -> None:
    await player.prepare()
    started = time.monotonic()
    await player.play()
    while player.state == "playing":
        if seconds and time.monotonic() - started >= seconds:
            break
        await asyncio.sleep(0.5)


def _printer(args: argparse.Namespace) -> Callable[[str, dict], None]:
    last = [0.0]

    def on_event(kind: str, data: dict) -> None:
        if args.json:
            return
        if kind == "now_playing":
            output.info(f"now playing {data['title']} ({data['track_id']!r}, "
                        f"{data.get('duration_s') or 0:.0f} s)")
        elif kind == "skipped":
            output.info(f"gridcast: skipped {data['title']}: {data['reason']}")
        elif kind == "position" and time.monotonic() - last[0] >= 10.0:
            last[0] = time.monotonic()
            minutes, seconds = divmod(data["position_s"], 60)
            output.info(f"  {int(minutes)}:{seconds:04.1f}")

    return on_event

"""``gridcast live``: light the devices on music gridcast does not play and has no map for.

The C tracker follows an audio input (or, with ``--link``, gridcast joins the Ableton
Link session on the LAN) and the devices get the coming beats ahead of time, corrected
as the model updates, plus the band envelopes (docs/live.md). A status line shows the
state (locked / coasting / idle), tempo, confidence and input overflows; on a terminal
the operator's keys set the tempo octave and the downbeat (host/cli/live_keys.py).
Ctrl-C stops; the devices then let the light decay and show their idle effect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from gridcast.host.cli import output
from gridcast.host.cli.options import add_target_arguments, signer

HELP = "follow live music (an audio input, or --link) and send the devices its coming beats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("--input", default=None, metavar="DEV",
                   help="audio input device, name or index (default: the system's); a "
                   "line from the mixer follows better than a microphone in the room "
                   "(docs/live.md)")
    p.add_argument("--rate", type=int, default=None, help="input sample rate (default: the "
                   "device's)")
    p.add_argument("--input-offset-ms", type=float, default=0.0,
                   help="the room's input latency PortAudio does not know (added to every "
                        "heard time)")
    p.add_argument("--link", action="store_true",
                   help="follow the Ableton Link session on the LAN instead of an input")
    p.add_argument("--quantum", type=int, default=4, metavar="N",
                   help="beats per bar with --link (Link's quantum)")
    p.add_argument("--tempo-hint", type=float, default=None, metavar="BPM",
                   help="the music's tempo as you know it: the input is followed within "
                        "BPM/1.3 .. BPM*1.3, so a song is not taken at half or double speed")
    p.add_argument("--bars", choices=("audio", "tracker"), default="audio",
                   help="where an input's bar comes from until you press on the one: found "
                        "in the recent audio (default), or the tracker's own guess (close to "
                        "chance, about 1.5%% of a core less)")
    p.add_argument("--coast-s", type=float, default=4.0,
                   help="seconds the beats go on, fading, after the music is lost")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")


def run(args: argparse.Namespace) -> int:
    from gridcast.agent.live_mode import LiveConfig

    config = LiveConfig(source="link" if args.link else "input", input_device=_device(args.input),
                        rate=args.rate, input_offset_ms=args.input_offset_ms,
                        quantum=args.quantum, coast_s=args.coast_s,
                        tempo_hint=args.tempo_hint, bars=args.bars)
    try:
        status = asyncio.run(_live(args, config))
    except KeyboardInterrupt:
        return 130
    if args.json:
        output.print_json(status)
    return 0


def _device(text: str | None) -> str | int | None:
    return int(text) if text is not None and text.isdigit() else text


async def _live(args: argparse.Namespace, config) -> dict:
    from gridcast.agent.live_mode import LiveMode, status_line
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport
    from gridcast.host.cli.live_keys import HELP as KEYS_HELP
    from gridcast.host.cli.live_keys import operator_keys

    mode = LiveMode(config).open()
    stop = asyncio.Event()
    tty = sys.stderr.isatty()
    async with open_transport(args.broker, signer=signer(args)) as transport, \
            contextlib.AsyncExitStack() as stack:
        responder = SyncResponder(transport)
        responder.start()
        task = asyncio.create_task(mode.run(transport, args.to or None, stop))
        loop = asyncio.get_running_loop()
        end = loop.time() + args.seconds if args.seconds else None
        last_state = ""

        def say(text: str) -> None:
            sys.stderr.write("\n" if tty else "")
            output.info(text)

        try:
            keys = stack.enter_context(operator_keys(mode, say))
            if keys and not args.json:
                output.info(KEYS_HELP)
            while not task.done() and (end is None or loop.time() < end):
                status = mode.status()
                if not args.json:
                    if tty:
                        sys.stderr.write("\r" + status_line(status) + "   ")
                        sys.stderr.flush()
                    elif status["state"] != last_state:  # a log: one line per state change
                        output.info(status_line(status))
                last_state = status["state"]
                await asyncio.sleep(0.25)
        finally:
            stop.set()
            await task
            await responder.stop()
            if tty and not args.json:
                sys.stderr.write("\n")
    status = mode.status()
    if not args.json:
        output.info(f"live mode ended: {status['messages']} messages"
                    + (f", {status['overflows']} input overflows" if status.get("overflows")
                       else ""))
    return status

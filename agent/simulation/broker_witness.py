"""An independent witness on the broker: commands sent to devices, telemetry back.

The true-error report (led_report) needs to know when the agent told each device
to play (start_us) without asking the agent or the devices; the witness reads the
commands off the broker. Telemetry sequence numbers show loss.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from gridcast.agent.mqtt import MqttConnection, MqttError, MqttMessage
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
    drift_us: list[int] = field(default_factory=list)
    cpu_pct: list[int] = field(default_factory=list)
    free_mem: list[int] = field(default_factory=list)
    error_counts: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0  # QoS 1 may deliver a batch twice (a resend after a late PUBACK)
    batches: set[tuple[int, int]] = field(default_factory=set)  # (boot, seq) seen

    @property
    def lost(self) -> int:
        by_boot: dict[int, list[int]] = {}
        for boot, seq in self.batches:  # seq restarts at 0 with every boot
            by_boot.setdefault(boot, []).append(seq)
        return sum(max(s) - min(s) + 1 - len(s) for s in by_boot.values())


class BrokerWitness:
    def __init__(self, host: str | MqttConnection, port: int = 1883) -> None:
        """``host``: a broker (the witness makes and owns its connection), or the
        process's MqttConnection (started and stopped by its owner)."""
        self.commands: list[Command] = []
        self.telemetry: dict[str, DeviceTelemetry] = {}
        self._lock = threading.Lock()
        self._owned = not isinstance(host, MqttConnection)
        self.mqtt = (MqttConnection(host, port, client_id=f"gridcast-witness-{id(self)}")
                     if isinstance(host, str) else host)
        self.host, self.port = self.mqtt.host, self.mqtt.port

    def _on_message(self, m: MqttMessage) -> None:
        try:
            msg = messages.decode(m.payload)
            if msg.kind == "sealed":  # the command inside (docs/protocol.md 11)
                msg = messages.decode(msg.body)
        except ProtocolError:
            return
        parsed = topics.parse_device_topic(m.topic)
        device_id = parsed[0] if parsed else None
        with self._lock:
            if msg.kind == "play":
                self.commands.append(Command(m.received_us, device_id, "play", msg.start_us))
            elif msg.kind == "seek":
                self.commands.append(Command(m.received_us, device_id, "seek",
                                             msg.at_us - msg.position_us))
            elif msg.kind == "stop":
                self.commands.append(Command(m.received_us, device_id, "stop", at_us=msg.at_us))
            elif msg.kind == "telemetry" and device_id:
                t = self.telemetry.setdefault(device_id, DeviceTelemetry())
                if (msg.boot, msg.seq) in t.batches:  # once, as the collector stores it
                    t.duplicates += 1
                    return
                t.batches.add((msg.boot, msg.seq))
                t.drift_us.extend(msg.drift_us)
                t.cpu_pct.append(msg.cpu_pct)
                t.free_mem.append(msg.free_mem)
                pairs = msg.error_counts
                t.error_counts = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}

    def start(self, timeout_s: float = 10.0) -> None:
        """Subscribe, and return once the broker acknowledged it: a command it missed
        would skew the report."""
        for topic in (f"{topics.PREFIX}/dev/+/{topics.CMD}", topics.BROADCAST_CMD,
                      f"{topics.PREFIX}/dev/+/{topics.TELEMETRY}"):
            self.mqtt.subscribe(topic, 1, self._on_message)
        if self._owned:
            try:
                self.mqtt.start(timeout_s)
            except MqttError as exc:
                raise RuntimeError(f"broker witness: {exc}") from exc
        elif not self.mqtt.wait_ready(timeout_s):
            raise RuntimeError(f"broker witness: no SUBACK from {self.mqtt.broker} "
                               f"within {timeout_s:g} s")

    def stop(self) -> None:
        if self._owned:
            self.mqtt.stop()

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

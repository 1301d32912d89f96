"""The attacker in the path to one device: forged, replayed, reordered, altered and held
back commands and sync answers (docs/protocol.md 11), each with the reason the device
must refuse it with. Used by ``MqttTamperProxy`` (hil/faults.py) on the packets the
broker sends a device; sans-I/O, so a test can drive it directly.

Its material is the sealed ``rate`` commands and sync answers it sees (the scenario's
agent sends a no-op rate while the show plays), so the attack starts with the show.
What it sends, in turn (``KINDS``):
- plain_cmd: a state command without a seal (stop, seek, play, rate, light offset, live
  beats) -> unauthenticated;
- plain_sync: a sync answer without a seal, 40 ms off -> unauthenticated;
- bad_mac_cmd / bad_mac_sync: sealed with the device's key id, boot id and a fresh
  counter, but a MAC made without the key -> bad_signature;
- unknown_key: sealed under a key id the device does not hold -> unknown_key;
- altered_cmd / altered_sync: a captured sealed message with one byte of the inner
  message changed -> bad_signature;
- replay_cmd / replay_sync: the last captured sealed command / sync answer again ->
  replayed;
- reorder_cmd: the next real ``rate`` command held until the one after it has passed
  -> reordered (the real one is lost: what an attacker in the path can do);
- stale_sync: the next real sync answer held 2.2 s -> stale.
"""

from __future__ import annotations

import os
import random
import struct
import time

from gridcast.protocol import messages
from gridcast.protocol.reasons import (
    BAD_SIGNATURE,
    REORDERED,
    REPLAYED,
    STALE,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
)

KINDS = ("plain_cmd", "plain_sync", "bad_mac_cmd", "bad_mac_sync", "unknown_key",
         "altered_cmd", "altered_sync", "replay_cmd", "replay_sync", "reorder_cmd",
         "stale_sync")
EXPECTED = {"plain_cmd": UNAUTHENTICATED, "plain_sync": UNAUTHENTICATED,
            "bad_mac_cmd": BAD_SIGNATURE, "bad_mac_sync": BAD_SIGNATURE,
            "unknown_key": UNKNOWN_KEY, "altered_cmd": BAD_SIGNATURE,
            "altered_sync": BAD_SIGNATURE, "replay_cmd": REPLAYED, "replay_sync": REPLAYED,
            "reorder_cmd": REORDERED, "stale_sync": STALE}
HOLD_SYNC_S = 2.2  # past the device's 2 s limit on a sync round trip
HOLD_CMD_MAX_S = 2.0  # no newer command came: the held one goes on unharmed (not counted)
SHIFT_US = 40_000  # what a forged sync answer tries to move the clock by


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT PUBLISH at QoS 0 (no packet id for the device to acknowledge)."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + payload
    return b"\x30" + _varint(len(body)) + body


def parse_publish(packet: bytes) -> tuple[str, bytes] | None:
    """(topic, payload) of a PUBLISH packet, else None."""
    if packet[0] & 0xF0 != 0x30:
        return None
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1
    tlen = struct.unpack_from("!H", packet, i)[0]
    topic = packet[i + 2:i + 2 + tlen].decode()
    at = i + 2 + tlen + (2 if (packet[0] >> 1) & 3 else 0)
    return topic, packet[at:]


def _flip_inner(sealed: bytes, rng: random.Random) -> bytes:
    """One byte of the inner message changed (the MAC is the last 16 bytes, after its
    2-byte bin header; the inner message ends right before)."""
    msg = messages.decode(sealed)
    body = bytearray(msg.body)
    body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    return messages.encode("sealed", key_id=msg.key_id, session=msg.session,
                           counter=msg.counter, sent_us=msg.sent_us, body=bytes(body),
                           mac=msg.mac)


class Forger:
    """One device's stream from the broker: ``on_legit`` passes real packets through (or
    holds them), ``forge`` makes the next attack packet; ``expected`` tallies reasons."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.turn = 0
        self.cmd_topic = ""
        self.sync_topic = ""
        self.last_cmd: bytes | None = None  # payloads of sealed messages seen
        self.last_sync: bytes | None = None
        self.want_reorder = False
        self.want_stale = False
        self.held_cmd: tuple[float, bytes] | None = None
        self.held_sync: tuple[float, bytes] | None = None
        self.expected: dict[int, int] = {}
        self.sent: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1
        reason = EXPECTED[kind]
        self.expected[reason] = self.expected.get(reason, 0) + 1

    @property
    def injected(self) -> int:
        return sum(self.sent.values())

    def on_legit(self, packet: bytes, now_s: float) -> list[bytes]:
        """The packets to forward now for one real packet from the broker."""
        parsed = parse_publish(packet)
        if parsed is None:
            return [packet]
        topic, payload = parsed
        sealed = payload[1:2] == bytes([messages.SEALED])
        if topic.endswith("/sync/resp") and sealed:
            self.sync_topic = topic
            if self.want_stale and self.held_sync is None:
                self.want_stale = False
                self.held_sync = (now_s, packet)
                return []
            self.last_sync = payload
            return [packet]
        if topic.endswith("/cmd") and sealed and messages.decode(payload).body[1:2] == \
                bytes([messages.RATE]):
            # Only rate commands (the scenario's no-op ones while playing) are material
            # and held back: the attack starts once the show is on, never during a deploy.
            self.cmd_topic = topic
            out = [packet]
            if self.held_cmd is not None:  # a newer command passes first: reordered
                out.append(self.held_cmd[1])
                self.held_cmd = None
                self._count("reorder_cmd")
            elif self.want_reorder:
                self.want_reorder = False
                self.held_cmd = (now_s, packet)
                return []
            self.last_cmd = payload
            return out
        return [packet]

    def due(self, now_s: float) -> list[bytes]:
        """Held packets whose time has come."""
        out = []
        if self.held_sync is not None and now_s - self.held_sync[0] >= HOLD_SYNC_S:
            out.append(self.held_sync[1])
            self.held_sync = None
            self._count("stale_sync")
        if self.held_cmd is not None and now_s - self.held_cmd[0] >= HOLD_CMD_MAX_S:
            out.append(self.held_cmd[1])  # nothing newer came: it goes on as it was
            self.held_cmd = None
        return out

    def forge(self) -> bytes | None:
        """The next attack packet (None until real sealed traffic has been seen)."""
        if self.last_cmd is None or self.last_sync is None:
            return None
        kind = KINDS[self.turn % len(KINDS)]
        self.turn += 1
        if kind == "reorder_cmd":
            self.want_reorder = self.held_cmd is None
            return None  # counted when the held command is released out of order
        if kind == "stale_sync":
            self.want_stale = self.held_sync is None
            return None
        payload = self._payload(kind)
        self._count(kind)
        topic = self.sync_topic if kind.endswith("sync") else self.cmd_topic
        return publish_packet(topic, payload)

    def _payload(self, kind: str) -> bytes:
        assert self.last_cmd is not None and self.last_sync is not None
        rng = self.rng
        cmd = messages.decode(self.last_cmd)
        sync = messages.decode(self.last_sync)
        inner_sync = messages.decode(sync.body)
        now = time.time_ns() // 1000
        if kind == "plain_cmd":
            return rng.choice([
                messages.encode("stop"),
                messages.encode("seek", position_us=0, at_us=now),
                messages.encode("play", track_id="hil-song", start_us=now + 250_000),
                messages.encode("rate", rate_ppm=1_080_000),
                messages.encode("light_offset", offset_us=300_000),
                messages.encode("live_beats", session=1, generation=1, first_index=0,
                                times_us=[now + 100_000], beat_in_bar=[1], strength=[255])])
        fake_sync = messages.encode("sync_resp", seq=inner_sync.seq, t1_us=inner_sync.t1_us,
                                    t2_us=inner_sync.t2_us + SHIFT_US,
                                    t3_us=inner_sync.t3_us + SHIFT_US)
        if kind == "plain_sync":
            return fake_sync
        if kind in ("bad_mac_cmd", "bad_mac_sync", "unknown_key"):
            body = messages.encode("stop") if kind != "bad_mac_sync" else fake_sync
            return messages.encode(
                "sealed", key_id="00000000" if kind == "unknown_key" else cmd.key_id,
                session=cmd.session, counter=0 if kind == "bad_mac_sync" else now,
                sent_us=now, body=body, mac=os.urandom(16))
        if kind == "altered_cmd":
            return _flip_inner(self.last_cmd, rng)
        if kind == "altered_sync":
            return _flip_inner(self.last_sync, rng)
        if kind == "replay_cmd":
            return self.last_cmd
        return self.last_sync  # replay_sync

"""Regenerate the shared test vectors: python tests/vectors/make_vectors.py

The vectors are the contract between the CPython side (msgpack, the bundle
builder) and the device decoder (run under MicroPython by tests): every file
here is produced by the CPython reference and checked against both. Output is
deterministic; regenerate only when the protocol changes on purpose, and
review the diff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import msgpack
import numpy as np

from gridcast.protocol import bundle_builder, command_auth, frames, messages, reasons
from gridcast.protocol.key_id import key_id

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes(range(32))
KEY_ID = "test0001"


def jsonable(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


MESSAGES = [
    ("hello", dict(proto_version=1, fw_version=0x000100, device_id="dev-01", max_frame=4096,
                   window=4, active_track="demo-song", active_version=3)),
    ("bundle_offer", dict(transfer_id=7, size=49008, sha256=bytes(range(32)), chunk_size=1024,
                          track_id="song", bundle_version=2)),
    ("chunk", dict(transfer_id=7, offset=2048, data=b"\x00\x01\x02\xff" * 8)),
    ("chunk_ack", dict(transfer_id=7, next_offset=3072)),
    ("chunk_nack", dict(transfer_id=7, next_offset=2048, reason=reasons.BAD_OFFSET)),
    ("activate", dict(transfer_id=7)),
    ("activated", dict(track_id="song", bundle_version=2, sha256=bytes(32))),
    ("rejected", dict(transfer_id=7, reason=reasons.BAD_SIGNATURE, detail="HMAC mismatch")),
    ("sync_req", dict(seq=41, t1_us=1_795_000_000_123_456)),
    ("sync_resp", dict(seq=41, t1_us=1_795_000_000_123_456, t2_us=1_795_000_000_130_001,
                       t3_us=1_795_000_000_130_020)),
    ("play", dict(track_id="song", start_us=1_795_000_002_000_000)),
    ("play", dict(track_id="song", start_us=1_795_000_002_000_000, rate_ppm=940_000)),
    ("stop", dict(at_us=0)),
    ("seek", dict(position_us=30_000_000, at_us=1_795_000_010_000_000)),
    ("seek", dict(position_us=30_000_000, at_us=1_795_000_010_000_000, rate_ppm=1_060_000)),
    ("telemetry", dict(seq=1001, device_us=2**40 + 5, drift_us=[120, -85, 3, -2000, 70000],
                       cpu_pct=37, temp_dc=-52, free_mem=81234, error_counts=[3, 2, 6, 1])),
    ("telemetry", dict(seq=0, device_us=0, drift_us=[], cpu_pct=0, temp_dc=None, free_mem=0,
                       error_counts=[])),
    ("status", dict(state="online", fw_version=0x000100, active_track="song", bundle_version=2,
                    uptime_s=86400)),
    ("error", dict(reason=reasons.UNKNOWN_MESSAGE, detail="tag 99", ref_tag=99)),
    ("rollback", {}),
    ("rate", dict(rate_ppm=1_023_500, at_us=1_795_000_012_500_000)),
    ("live_beats", dict(session=0xC0FFEE, generation=17, first_index=412,
                        times_us=[1_795_000_020_000_000, 1_795_000_020_468_750,
                                  1_795_000_020_937_500, 1_795_000_021_406_250],
                        beat_in_bar=[1, 2, 3, 4], strength=[255, 128, 170, 128])),
    ("live_beats", dict(session=0xC0FFEE, generation=18, first_index=413, times_us=[],
                        beat_in_bar=[], strength=[])),
    ("live_env", dict(start_us=1_795_000_020_000_000, rate_mhz=50_000,
                      bass=bytes([0, 40, 255, 90]), mid=bytes([1, 2, 3, 4]),
                      high=bytes([200, 100, 50, 0]))),
    ("light_offset", dict(offset_us=-12_500)),
    ("light_offset", dict(offset_us=80_000)),
    ("hello", dict(proto_version=2, fw_version=0x000500, device_id="dev-02", max_frame=2048,
                   window=4, active_track="", active_version=0, light_offset_us=-12_500)),
    ("status", dict(state="online", fw_version=0x000500, active_track="song", bundle_version=2,
                    uptime_s=60, light_offset_us=80_000)),
    ("hello", dict(proto_version=3, fw_version=0x000600, device_id="dev-03", max_frame=2048,
                   window=4, active_track="", active_version=0, light_offset_us=0, auth=2,
                   boot=0x1234567, key_ids="8ec6e6ce,0badc0de")),
    ("sealed", dict(key_id="8ec6e6ce", session=0x1234567, counter=1_795_000_020_000_000,
                    sent_us=1_795_000_020_000_100, body=bytes([0x91, 0x11]),
                    mac=bytes(range(16)))),
    ("key_install", dict(key_id="0badc0de", key=bytes(range(32)), bundle_key_id="12345678",
                         bundle_key=bytes(range(32, 64)))),
    ("key_retire", dict(key_id="0badc0de")),
    ("activate", dict(transfer_id=8, at_us=1_795_000_030_000_000)),
]

BAD_MESSAGES = [
    ("empty", b"", reasons.TRUNCATED),
    ("not an array", msgpack.packb(5), reasons.MALFORMED),
    ("unknown tag", msgpack.packb([99, 1]), reasons.UNKNOWN_MESSAGE),
    ("wrong field type", msgpack.packb([3, "seven", 0, b""]), reasons.MALFORMED),
    ("negative unsigned", msgpack.packb([4, 7, -1]), reasons.MALFORMED),
    ("truncated bin", msgpack.packb([3, 7, 0, b"abcdef"])[:-2], reasons.TRUNCATED),
    ("trailing bytes", msgpack.packb([12, 0]) + b"\x00", reasons.MALFORMED),
    ("huge array count", b"\xdd\xff\xff\xff\xff", reasons.TRUNCATED),
    ("bad utf-8", b"\x92\x0f\xa2\xff\xfe", reasons.MALFORMED),
    ("deep nesting", b"\x91" * 20 + b"\x00", reasons.LIMIT_EXCEEDED),
    ("negative rate", msgpack.packb([18, -940_000, 0]), reasons.MALFORMED),
    ("live beat time as text", msgpack.packb([19, 1, 1, 0, ["soon"], [1], [9]]),
     reasons.MALFORMED),
    ("light offset as bytes", msgpack.packb([21, b"\x10"]), reasons.MALFORMED),
]

# Messages that decode but mean something a receiver refuses (messages.check_*).
_T0 = 1_795_000_020_000_000
CHECKS = [
    ("rate at 92 %", "rate", dict(rate_ppm=920_000), reasons.OK),
    ("rate at 108 %", "rate", dict(rate_ppm=1_080_000), reasons.OK),
    ("rate below 92 %", "rate", dict(rate_ppm=919_999), reasons.RATE_OUT_OF_RANGE),
    ("rate above 108 %", "rate", dict(rate_ppm=1_080_001), reasons.RATE_OUT_OF_RANGE),
    ("play at half speed", "play", dict(track_id="s", rate_ppm=500_000),
     reasons.RATE_OUT_OF_RANGE),
    ("seek at 120 %", "seek", dict(rate_ppm=1_200_000), reasons.RATE_OUT_OF_RANGE),
    ("live beats in order", "live_beats", dict(times_us=[_T0, _T0 + 1], beat_in_bar=[1, 2],
                                               strength=[0, 255]), reasons.OK),
    ("live beats out of order", "live_beats",
     dict(times_us=[_T0, _T0], beat_in_bar=[1, 2], strength=[9, 9]), reasons.INCONSISTENT),
    ("live beats with a missing strength", "live_beats",
     dict(times_us=[_T0, _T0 + 5], beat_in_bar=[1, 2], strength=[9]), reasons.INCONSISTENT),
    ("live beats with strength 256", "live_beats",
     dict(times_us=[_T0], beat_in_bar=[1], strength=[256]), reasons.INCONSISTENT),
    ("33 live beats", "live_beats",
     dict(times_us=[_T0 + k for k in range(33)], beat_in_bar=[1] * 33, strength=[0] * 33),
     reasons.LIMIT_EXCEEDED),
    ("live envelope", "live_env", dict(rate_mhz=50_000, bass=b"\x01", mid=b"\x02",
                                       high=b"\x03"), reasons.OK),
    ("live envelope bands differ", "live_env", dict(rate_mhz=50_000, bass=b"\x01\x02",
                                                    mid=b"\x02", high=b"\x03"),
     reasons.INCONSISTENT),
    ("live envelope without a rate", "live_env", dict(bass=b"\x01", mid=b"\x02",
                                                      high=b"\x03"), reasons.INCONSISTENT),
    ("257 envelope frames", "live_env", dict(rate_mhz=50_000, bass=bytes(257),
                                             mid=bytes(257), high=bytes(257)),
     reasons.LIMIT_EXCEEDED),
    ("light offset -1 s", "light_offset", dict(offset_us=-1_000_000), reasons.OK),
    ("light offset over 1 s", "light_offset", dict(offset_us=1_000_001),
     reasons.LIMIT_EXCEEDED),
]


def message_vectors() -> dict:
    good = []
    for kind, fields in MESSAGES:
        data = messages.encode(kind, **fields)
        tag = messages.TAGS[kind]
        reference = msgpack.packb([tag, *[fields.get(f[0], f[2]) for f in messages.SCHEMA[tag][1]]],
                                  use_bin_type=True)
        assert data == reference, kind  # our encoder writes what msgpack writes
        good.append({"kind": kind, "fields": {k: jsonable(v) for k, v in fields.items()},
                     "hex": data.hex()})
    # An older sender (fewer fields) and a newer one (one extra field) both decode.
    evolved = [
        {"name": "older hello without window", "hex": msgpack.packb([1, 1, 256, "d"]).hex(),
         "kind": "hello", "expect": {"proto_version": 1, "fw_version": 256, "device_id": "d",
                                     "max_frame": 0, "window": 1}},
        {"name": "newer chunk_ack with an extra field",
         "hex": msgpack.packb([4, 7, 100, "future"]).hex(), "kind": "chunk_ack",
         "expect": {"transfer_id": 7, "next_offset": 100}},
        # Protocol 1 senders: no rate means normal speed, no light offset means none.
        {"name": "protocol 1 play plays at normal speed",
         "hex": msgpack.packb([11, "song", 1_795_000_002_000_000]).hex(), "kind": "play",
         "expect": {"track_id": "song", "start_us": 1_795_000_002_000_000,
                    "rate_ppm": 1_000_000}},
        {"name": "protocol 1 seek plays at normal speed",
         "hex": msgpack.packb([13, 5_000_000, 1_795_000_002_000_000]).hex(), "kind": "seek",
         "expect": {"position_us": 5_000_000, "rate_ppm": 1_000_000}},
        {"name": "protocol 1 hello has no light offset",
         "hex": msgpack.packb([1, 1, 256, "d", 4096, 4, "s", 3]).hex(), "kind": "hello",
         "expect": {"active_version": 3, "light_offset_us": 0}},
        {"name": "protocol 2 hello: the device checks no seals",
         "hex": msgpack.packb([1, 2, 1280, "d", 2048, 4, "", 0, -5]).hex(), "kind": "hello",
         "expect": {"light_offset_us": -5, "auth": 0, "boot": 0, "key_ids": ""}},
        {"name": "protocol 3 activate switches at once",
         "hex": msgpack.packb([6, 7]).hex(), "kind": "activate",
         "expect": {"transfer_id": 7, "at_us": 0}},
        {"name": "protocol 1 status has no light offset",
         "hex": msgpack.packb([15, "online", 256, "s", 3, 9]).hex(), "kind": "status",
         "expect": {"uptime_s": 9, "light_offset_us": 0}},
    ]
    bad = [{"name": n, "hex": d.hex(), "reason": r} for n, d, r in BAD_MESSAGES]
    checks = [{"name": n, "hex": messages.encode(kind, **fields).hex(), "reason": r}
              for n, kind, fields, r in CHECKS]
    return {"good": good, "evolved": evolved, "bad": bad, "checks": checks}


def frame_vectors() -> dict:
    payloads = [b"", b"x", bytes(range(256)), messages.encode("chunk", transfer_id=1, offset=0,
                                                              data=b"\xa5\xc3" * 50)]
    good = [{"payload": p.hex(), "frame": frames.encode_frame(p).hex()} for p in payloads]
    # A stream with garbage, a corrupt frame and a frame split by noise.
    f1, f2, f3 = (frames.encode_frame(p) for p in (b"one", b"two", b"three"))
    corrupt = bytearray(f2)
    corrupt[6] ^= 0x01
    stream = b"\x00\xa5junk\xa5" + f1 + bytes(corrupt) + b"\xa5\xc3\xff\xff" + f3
    return {"good": good, "stream": {"hex": stream.hex(), "payloads": [b"one".hex(),
                                                                       b"three".hex()],
                                     "bad_crc": 1, "oversized": 1}}


def sample_source(seconds: float = 20.0) -> bundle_builder.BundleSource:
    rng = np.random.default_rng(1)
    beats = np.arange(0.25, seconds - 0.1, 0.5)
    beats = beats + rng.normal(0, 0.002, len(beats))
    n = len(beats)
    frames_n = int(seconds * 50)
    env = tuple(np.round(rng.random(frames_n), 3) for _ in range(3))
    return bundle_builder.BundleSource(
        track_id="vector-song", audio_sha256=bytes(range(32, 64)), bundle_version=3,
        created_s=1_795_000_000, duration_s=seconds, tempo_bpm=120.0, beats_s=beats,
        beat_in_bar=[i % 4 + 1 for i in range(n)], strength=np.linspace(0, 1, n),
        envelope_rate_hz=50.0, envelopes=env)


def tamper(data: bytes, at: int, xor: int = 0x01) -> bytes:
    out = bytearray(data)
    out[at] ^= xor
    return bytes(out)


def _lying_beat_count(good: bytes, n: int) -> bytes:
    """The beat count replaced by 65535 (over MAX_BEATS): refused before any read."""
    at = good.index(bytes([0x94, n]))  # beats = [count (fixint), ...]
    return good[:at + 1] + b"\xcd\xff\xff" + good[at + 2:]


def bundle_vectors() -> dict:
    src = sample_source()
    good = bundle_builder.build(src, KEY, KEY_ID)
    other_key = bundle_builder.build(src, bytes(32), KEY_ID)  # right id, wrong key
    unknown = bundle_builder.build(src, KEY, "other")
    newer_fw = bundle_builder.build(
        bundle_builder.BundleSource(**{**src.__dict__, "min_firmware": 0x020000}), KEY, KEY_ID)
    signed = bundle_builder.signed_part(src, KEY_ID)
    signed[0][1] = 2  # schema version from the future
    body = msgpack.packb(signed, use_bin_type=True)
    future = b"\x92" + body + msgpack.packb([hashlib.sha256(body).digest(),
                                             hmac.new(KEY, body, hashlib.sha256).digest()])
    beats_at = good.index(b"\xc4" + bytes([4 * len(src.beats_s)]))  # deltas bin header
    cases = [
        ("good", good, reasons.OK),
        ("flipped beat byte", tamper(good, beats_at + 10), reasons.DIGEST_MISMATCH),
        ("flipped MAC byte", tamper(good, len(good) - 1), reasons.BAD_SIGNATURE),
        ("wrong key", other_key, reasons.BAD_SIGNATURE),
        ("unknown key id", unknown, reasons.UNKNOWN_KEY),
        ("needs newer firmware", newer_fw, reasons.FIRMWARE_TOO_OLD),
        ("future schema", future, reasons.SCHEMA_UNSUPPORTED),
        ("truncated", good[:-40], reasons.TRUNCATED),
        ("trailing garbage", good + b"\x00", reasons.MALFORMED),
        ("not a bundle", b"\x93\x01\x02\x03", reasons.MALFORMED),
        ("oversized beat array", _lying_beat_count(good, len(src.beats_s)),
         reasons.LIMIT_EXCEEDED),
    ]
    out = [{"name": name, "hex": data.hex(), "reason": reason} for name, data, reason in cases]
    expect = {"track_id": src.track_id, "bundle_version": 3, "beat_count": len(src.beats_s),
              "first_beats_us": [round(t * 1e6) for t in src.beats_s[:5]],
              "last_beat_us": round(src.beats_s[-1] * 1e6),
              "env_frames": len(src.envelopes[0]), "meter": 4,
              "env_at_frame_10": [round(e[10] * 255) for e in src.envelopes]}
    return {"key_hex": KEY.hex(), "key_id": KEY_ID, "fw_version": 0x000100, "expect": expect,
            "cases": out}


def _reference_mac(key: bytes, kid: str, session: int, counter: int, sent_us: int,
                   body: bytes) -> bytes:
    """The MAC by the standard library, from docs/protocol.md 11 alone."""
    data = (command_auth.MAC_LABEL + kid.encode() + session.to_bytes(4, "big")
            + counter.to_bytes(8, "big") + sent_us.to_bytes(8, "big") + body)
    return hmac.new(key, data, hashlib.sha256).digest()[:16]


def auth_vectors() -> dict:
    """Sealed messages (docs/protocol.md 11): key derivation, MACs, and a sequence a
    device's Guard must accept or refuse with the reason given."""
    site, device = KEY, "stage-1"
    dkey = hmac.new(site, command_auth.DEVICE_KEY_LABEL + device.encode(),
                    hashlib.sha256).digest()
    assert dkey == command_auth.device_key(site, device)
    kid = key_id(dkey)
    session, t0 = 0x1234567, 1_795_000_020_000_000

    def sealed(counter: int, sent_us: int, body: bytes, key: bytes = dkey, k: str = kid,
               sess: int = session) -> bytes:
        data = command_auth.seal(key, k, sess, counter, sent_us, body)
        ref = msgpack.packb([messages.SEALED, k, sess, counter, sent_us, body,
                             _reference_mac(key, k, sess, counter, sent_us, body)],
                            use_bin_type=True)
        assert data == ref
        return data

    stop = messages.encode("stop", at_us=0)
    play = messages.encode("play", track_id="song", start_us=t0 + 2_000_000)
    first = sealed(t0, t0, play)
    altered = bytearray(first)
    altered[-20] ^= 0x01  # a byte of the body (the MAC is the last 16 bytes)
    other_key = bytes(32)
    steps = [
        ("good play", first, t0 + 3000, reasons.OK),
        ("same bytes again", first, t0 + 4000, reasons.REPLAYED),
        ("altered body", bytes(altered), t0 + 4000, reasons.BAD_SIGNATURE),
        ("MAC of another key", sealed(t0 + 10, t0, stop, key=other_key), t0, reasons.BAD_SIGNATURE),
        ("unknown key id", sealed(t0 + 11, t0, stop, k="00000000"), t0, reasons.UNKNOWN_KEY),
        ("another boot", sealed(t0 + 12, t0, stop, sess=session + 1), t0, reasons.WRONG_SESSION),
        ("newer stop", sealed(t0 + 100, t0 + 100, stop), t0 + 200, reasons.OK),
        ("older, never seen", sealed(t0 + 50, t0 + 50, stop), t0 + 200, reasons.REORDERED),
        ("held back 6 s", sealed(t0 + 200, t0 + 200, stop), t0 + 6_000_300, reasons.STALE),
        ("unsynced device takes it", sealed(t0 + 300, t0 + 300, stop), None, reasons.OK),
        ("4.9 s ahead is within", sealed(t0 + 400, t0 + 4_900_000, stop), t0, reasons.OK),
    ]
    new_site = bytes(range(100, 132))
    new_dkey = command_auth.device_key(new_site, device)
    wrapped = command_auth.wrap(dkey, b"c", new_dkey, key_id(new_dkey))
    return {"site_key_hex": site.hex(), "device_id": device, "device_key_hex": dkey.hex(),
            "key_id": kid, "session": session,
            "steps": [{"name": n, "hex": d.hex(), "agent_now_us": now, "reason": r}
                      for n, d, now, r in steps],
            "wrap": {"current_hex": dkey.hex(), "new_hex": new_dkey.hex(),
                     "new_id": key_id(new_dkey), "wrapped_hex": wrapped.hex()}}


def main() -> None:
    for name, data in (("messages", message_vectors()), ("frames", frame_vectors()),
                       ("bundles", bundle_vectors()), ("command_auth", auth_vectors())):
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        print(f"wrote tests/vectors/{name}.json")


if __name__ == "__main__":
    main()

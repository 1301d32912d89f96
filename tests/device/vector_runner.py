"""Check the shared vectors with the device-side protocol code.

Runs under CPython *and* the MicroPython unix port (tests/test_protocol_device.py
starts both); it prints one line per failure and a closing 'N passed, M failed'.

    micropython tests/device/vector_runner.py tests/vectors
"""

import binascii
import io
import json
import sys

from gridcast.protocol import bundle_reader, frames, key_id, messages, reasons, transfer, version
from gridcast.protocol.errors import ProtocolError

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def unhex(text):
    return binascii.unhexlify(text)


def plain(value):
    if isinstance(value, dict) and "hex" in value:
        return unhex(value["hex"])
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def load(folder, name):
    with open(folder + "/" + name + ".json") as f:
        return json.load(f)


def run_messages(v):
    for case in v["good"]:
        fields = {}
        for k in case["fields"]:
            fields[k] = plain(case["fields"][k])
        data = messages.encode(case["kind"], **fields)
        check("encode " + case["kind"], binascii.hexlify(data).decode() == case["hex"],
              binascii.hexlify(data).decode())
        msg = messages.decode(unhex(case["hex"]))
        ok = msg.kind == case["kind"]
        for k in fields:
            ok = ok and msg.fields[k] == fields[k]
        check("decode " + case["kind"], ok, repr(msg))
    for case in v["evolved"]:
        msg = messages.decode(unhex(case["hex"]))
        ok = msg.kind == case["kind"]
        for k in case["expect"]:
            ok = ok and msg.fields[k] == case["expect"][k]
        check(case["name"], ok, repr(msg))
    for case in v["bad"]:
        try:
            messages.decode(unhex(case["hex"]))
            check(case["name"], False, "accepted")
        except ProtocolError as e:
            check(case["name"], e.code == case["reason"],
                  "reason %s, expected %s: %s" % (reasons.name(e.code),
                                                  reasons.name(case["reason"]), e))


def check_meaning(msg):
    """What a receiver would say of a decoded message: OK or the refusal's reason."""
    try:
        if msg.kind in ("rate", "play", "seek"):
            messages.check_rate(msg.rate_ppm)
        elif msg.kind == "live_beats":
            messages.check_live_beats(msg)
        elif msg.kind == "live_env":
            messages.check_live_env(msg)
        elif msg.kind == "light_offset":
            messages.check_light_offset(msg.offset_us)
    except ProtocolError as e:
        return e.code
    return reasons.OK


def run_checks(v):
    for case in v.get("checks", []):
        code = check_meaning(messages.decode(unhex(case["hex"])))
        check(case["name"], code == case["reason"],
              "reason %s, expected %s" % (reasons.name(code), reasons.name(case["reason"])))


def run_frames(v):
    for case in v["good"]:
        payload = unhex(case["payload"])
        check("frame %d bytes" % len(payload),
              binascii.hexlify(frames.encode_frame(payload)).decode() == case["frame"])
        d = frames.Deframer()
        got = d.feed(unhex(case["frame"]))
        check("deframe %d bytes" % len(payload), got == [payload], repr(got))
    stream = unhex(v["stream"]["hex"])
    d = frames.Deframer()
    got = []
    for i in range(len(stream)):  # byte by byte, as a UART delivers it
        got.extend(d.feed(stream[i:i + 1]))
    want = [unhex(p) for p in v["stream"]["payloads"]]
    check("resync after garbage", got == want, repr(got))
    check("bad crc counted", d.bad_crc == v["stream"]["bad_crc"], str(d.bad_crc))
    check("oversized counted", d.oversized == v["stream"]["oversized"], str(d.oversized))


def run_bundles(v):
    keys = {v["key_id"]: unhex(v["key_hex"])}
    expect = v["expect"]
    for case in v["cases"]:
        data = unhex(case["hex"])
        try:
            info = bundle_reader.verify(io.BytesIO(data), len(data), keys, v["fw_version"])
            code = reasons.OK
        except ProtocolError as e:
            code = e.code
            info = None
            detail = str(e)
        check("bundle " + case["name"], code == case["reason"],
              "reason %s, expected %s %s" % (reasons.name(code), reasons.name(case["reason"]),
                                             "" if info else detail))
        if info is None or case["reason"] != reasons.OK:
            continue
        f = io.BytesIO(data)
        check("bundle fields", info.track_id == expect["track_id"] and
              info.bundle_version == expect["bundle_version"] and
              info.beat_count == expect["beat_count"] and info.meter == expect["meter"] and
              info.env_frames == expect["env_frames"])
        cursor = bundle_reader.BeatCursor(f, info)
        first = [cursor.next_time_us() for _ in range(5)]
        check("first beats", first == expect["first_beats_us"], repr(first))
        last = first[-1]
        while True:
            t = cursor.next_time_us()
            if t is None:
                break
            last = t
        check("last beat", last == expect["last_beat_us"], repr(last))
        env = list(bundle_reader.read_envelope(f, info, 10))
        check("envelope frame 10", env == expect["env_at_frame_10"], repr(env))


def _send(rx, kind, **fields):
    reply = rx.handle(messages.decode(messages.encode(kind, **fields)))
    return None if reply is None else messages.decode(reply.payload)


def run_transfer(v):
    """A transfer with a gap, a repeat, a stale chunk and a power cut, on this interpreter."""
    import hashlib

    keys = {v["key_id"]: unhex(v["key_hex"])}
    good = None
    for case in v["cases"]:
        if case["reason"] == reasons.OK:
            good = unhex(case["hex"])
    sha = hashlib.sha256(good).digest()
    store = transfer.MemoryStore()
    rx = transfer.Receiver(store, keys, v["fw_version"])
    r = _send(rx, "bundle_offer", transfer_id=5, size=len(good), sha256=sha, chunk_size=500,
              track_id="vector-song", bundle_version=3)
    check("offer acked at 0", r.kind == "chunk_ack" and r.next_offset == 0, repr(r))
    r = _send(rx, "chunk", transfer_id=5, offset=500, data=good[500:1000])
    check("gap refused with resume offset", r.kind == "chunk_nack" and
          r.reason == reasons.BAD_OFFSET and r.next_offset == 0, repr(r))
    r = _send(rx, "chunk", transfer_id=5, offset=0, data=good[:500])
    r = _send(rx, "chunk", transfer_id=5, offset=0, data=good[:500])
    check("repeat acked, not rewritten", r.next_offset == 500 and
          store.partial()[2] == 500, repr(r))
    r = _send(rx, "chunk", transfer_id=4, offset=500, data=good[500:1000])
    check("stale transfer refused", r.kind == "chunk_nack" and r.reason == reasons.REPLAYED,
          repr(r))
    _send(rx, "chunk", transfer_id=5, offset=500, data=good[500:1000])
    rx = transfer.Receiver(store, keys, v["fw_version"])  # power cut: state gone, file kept
    r = _send(rx, "bundle_offer", transfer_id=6, size=len(good), sha256=sha, chunk_size=500,
              track_id="vector-song", bundle_version=3)
    check("resume after restart", r.kind == "chunk_ack" and r.next_offset == 1000, repr(r))
    offset = 1000
    while offset < len(good):
        r = _send(rx, "chunk", transfer_id=6, offset=offset, data=good[offset:offset + 500])
        offset += 500
    check("all acked", r.kind == "chunk_ack" and r.next_offset == len(good), repr(r))
    r = _send(rx, "activate", transfer_id=6)
    check("activated", r.kind == "activated" and r.sha256 == sha and
          store.active()[0] == "vector-song", repr(r))
    tampered = bytearray(good)
    tampered[200] ^= 0x40
    rx = transfer.Receiver(store, keys, v["fw_version"])
    _send(rx, "bundle_offer", transfer_id=7, size=len(good), sha256=hashlib.sha256(
        bytes(tampered)).digest(), chunk_size=len(good), track_id="vector-song", bundle_version=4)
    r = _send(rx, "chunk", transfer_id=7, offset=0, data=bytes(tampered))
    check("corrupt bundle rejected", r.kind == "rejected" and
          r.reason == reasons.DIGEST_MISMATCH, repr(r))
    check("active bundle untouched", store.active()[2] == sha)


def run_names(v):
    """The key id and the version number, computed on this interpreter."""
    # The vectors label their key "test0001"; its derived id, fixed when key_id was defined.
    got = key_id.key_id(unhex(v["key_hex"]))
    check("key id", got == "8ec6e6ce", got)
    check("firmware version", version.version_text(version.FIRMWARE_VERSION) ==
          version.__version__, version.version_text(version.FIRMWARE_VERSION))


def main(folder):
    run_names(load(folder, "bundles"))
    run_messages(load(folder, "messages"))
    run_checks(load(folder, "messages"))
    run_frames(load(folder, "frames"))
    run_bundles(load(folder, "bundles"))
    run_transfer(load(folder, "bundles"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Mutation fuzzing of bundles, frames and messages; runs on CPython and MicroPython.

    python tests/fuzz/protocol_fuzz.py 100000        # the full run (about a minute)
    micropython tests/fuzz/protocol_fuzz.py 5000     # the device interpreter

Every mutated bundle must be rejected with a reason code (or be byte-identical to
the original), every frame the deframer returns must be one that was sent,
every mutated message must decode or fail with a reason; any other exception is
a crash. Prints a JSON summary; exit status 1 on any finding.
"""

import io
import json
import random
import sys
import time

from gridcast.protocol import bundle_reader, frames, messages, reasons
from gridcast.protocol.errors import ProtocolError


def mutate(rng, data):
    data = bytearray(data)
    op = rng.randint(0, 7)
    n = len(data)
    if op == 0 and n:  # flip bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randint(0, n - 1)] ^= 1 << rng.randint(0, 7)
    elif op == 1 and n:  # overwrite a byte
        data[rng.randint(0, n - 1)] = rng.randint(0, 255)
    elif op == 2:  # truncate
        data = data[:rng.randint(0, n)]
    elif op == 3:  # insert random bytes
        at = rng.randint(0, n)
        noise = bytes([rng.randint(0, 255) for _ in range(rng.randint(1, 16))])
        data = data[:at] + noise + data[at:]
    elif op == 4 and n:  # delete a range
        a = rng.randint(0, n - 1)
        data = data[:a] + data[a + rng.randint(1, 64):]
    elif op == 5 and n:  # duplicate a range (a repeated chunk)
        a = rng.randint(0, n - 1)
        b = min(n, a + rng.randint(1, 256))
        data = data[:b] + data[a:b] + data[b:]
    elif op == 6 and n > 2:  # swap two ranges (reordered chunks)
        a, b = sorted((rng.randint(0, n - 1), rng.randint(0, n - 1)))
        k = min(rng.randint(1, 256), b - a, n - b)
        if k > 0:
            data = data[:a] + data[b:b + k] + data[a + k:b] + data[a:a + k] + data[b + k:]
    elif n:  # set a length-looking byte to a huge value
        at = rng.randint(0, n - 1)
        data[at] = rng.choice([0xDD, 0xC6, 0xCF, 0xFF, 0xDB])
    return bytes(data)


def fuzz(iterations, bundle, keys, fw_version, seed=1):
    rng = random.Random(seed) if hasattr(random, "Random") else random
    if not hasattr(random, "Random"):
        random.seed(seed)
    stats = {"iterations": iterations, "bundles_rejected": 0, "bundles_identical": 0,
             "frames_checked": 0, "messages_checked": 0, "crashes": 0, "accepted_altered": 0,
             "reasons": {}, "max_verify_ms": 0.0}
    payloads = [messages.encode("chunk", transfer_id=1, offset=i * 64, data=bundle[i * 64:
                                                                                 i * 64 + 64])
                for i in range(6)]
    stream = b"".join(frames.encode_frame(p) for p in payloads)
    sent = set(payloads)
    for i in range(iterations):
        case = mutate(rng, bundle)
        t0 = time.time()
        try:
            bundle_reader.verify(io.BytesIO(case), len(case), keys, fw_version)
            if case == bundle:
                stats["bundles_identical"] += 1
            else:
                stats["accepted_altered"] += 1
                print("FINDING accepted altered bundle, iteration %d" % i)
        except ProtocolError as exc:
            if exc.code == reasons.OK or not str(exc):
                stats["crashes"] += 1
            stats["bundles_rejected"] += 1
            name = reasons.name(exc.code)
            stats["reasons"][name] = stats["reasons"].get(name, 0) + 1
        except Exception as exc:
            stats["crashes"] += 1
            print("FINDING crash %r at iteration %d" % (exc, i))
        stats["max_verify_ms"] = max(stats["max_verify_ms"], (time.time() - t0) * 1000)
        # Frames: a mutated stream, fed in random pieces.
        d = frames.Deframer()
        mutated = mutate(rng, stream)
        at = 0
        while at < len(mutated):
            step = rng.randint(1, 300)
            for payload in d.feed(mutated[at:at + step]):
                stats["frames_checked"] += 1
                if payload not in sent:
                    stats["accepted_altered"] += 1
                    print("FINDING altered frame accepted, iteration %d" % i)
                else:
                    try:
                        messages.decode(payload)
                    except ProtocolError:
                        pass
            at += step
        # Messages: a mutated message decodes or fails with a reason.
        try:
            messages.decode(mutate(rng, payloads[rng.randint(0, len(payloads) - 1)]))
        except ProtocolError:
            pass
        except Exception as exc:
            stats["crashes"] += 1
            print("FINDING message decoder crash %r at iteration %d" % (exc, i))
        stats["messages_checked"] += 1
    stats["max_verify_ms"] = round(stats["max_verify_ms"], 2)
    return stats


def main(argv):
    import binascii

    iterations = int(argv[1]) if len(argv) > 1 else 10000
    folder = argv[2] if len(argv) > 2 else "tests/vectors"
    with open(folder + "/bundles.json") as f:
        v = json.load(f)
    bundle = None
    for case in v["cases"]:
        if case["reason"] == reasons.OK:
            bundle = binascii.unhexlify(case["hex"])
    keys = {v["key_id"]: binascii.unhexlify(v["key_hex"])}
    t0 = time.time()
    stats = fuzz(iterations, bundle, keys, v["fw_version"])
    stats["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(stats))
    return 1 if stats["crashes"] or stats["accepted_altered"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

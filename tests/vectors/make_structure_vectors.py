"""Regenerate the bundle structure vectors: python -m tests.vectors.make_structure_vectors

Bundles with the structure part (sections and phrases, docs/protocol.md section 2),
good and bad, produced by the CPython builder and checked on CPython and MicroPython
by tests/device/structure_vector_runner.py. Deterministic; regenerate only when the
protocol changes on purpose, and review the diff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import msgpack

from gridcast.protocol import bundle_builder, reasons
from tests.vectors.make_vectors import KEY, KEY_ID, sample_source

HERE = os.path.dirname(os.path.abspath(__file__))
SECTIONS = ((0.0, 4.0, "intro", 0.2), (4.0, 8.0, "buildup", 0.55), (8.0, 14.0, "drop", 1.0),
            (14.0, 20.0, "break", 0.3))
PHRASES = (0.25, 4.25, 8.25, 12.25, 14.25)


def structured_source(sections=SECTIONS, phrases=PHRASES) -> bundle_builder.BundleSource:
    src = sample_source()
    return bundle_builder.BundleSource(**{
        **src.__dict__, "section_starts_s": [s[0] for s in sections],
        "section_ends_s": [s[1] for s in sections], "section_roles": [s[2] for s in sections],
        "section_energy": [s[3] for s in sections], "phrases_s": list(phrases)})


def _sign(signed: list) -> bytes:
    body = msgpack.packb(signed, use_bin_type=True)
    return b"\x92" + body + msgpack.packb([hashlib.sha256(body).digest(),
                                           hmac.new(KEY, body, hashlib.sha256).digest()],
                                          use_bin_type=True)


def _edited(edit) -> bytes:
    """A good structured bundle's signed part changed by ``edit`` and signed again (so
    only the structure check can refuse it)."""
    signed = bundle_builder.signed_part(structured_source(), KEY_ID)
    edit(signed)
    return _sign(signed)


def _overlap(signed: list) -> None:
    ends = bytearray(signed[3][2])
    ends[0:4] = (5_000_000).to_bytes(4, "little")  # intro ends after the build-up starts
    signed[3][2] = bytes(ends)


def _phrase_after_end(signed: list) -> None:
    phrases = bytearray(signed[3][6])
    phrases[-4:] = (25_000_000).to_bytes(4, "little")
    signed[3][6] = bytes(phrases)


def _many_sections(signed: list) -> None:
    signed[3][0] = 300


def _short_roles(signed: list) -> None:
    signed[3][3] = signed[3][3][:-1]


def _appended(signed: list) -> None:
    signed[3].append("a field of a later version")
    signed.append([1, 2, 3])  # and a later part


def structure_vectors() -> dict:
    src = structured_source()
    good = bundle_builder.build(src, KEY, KEY_ID)
    plain = bundle_builder.build(sample_source(), KEY, KEY_ID)
    phrases_only = bundle_builder.build(structured_source(sections=()), KEY, KEY_ID)
    cases = [
        ("with structure", good, reasons.OK, len(SECTIONS), len(PHRASES)),
        ("without structure (an older builder)", plain, reasons.OK, 0, 0),
        ("phrases without sections", phrases_only, reasons.OK, 0, len(PHRASES)),
        ("later fields and parts appended", _edited(_appended), reasons.OK, len(SECTIONS),
         len(PHRASES)),
        ("overlapping sections", _edited(_overlap), reasons.INCONSISTENT, 0, 0),
        ("phrase after the end", _edited(_phrase_after_end), reasons.INCONSISTENT, 0, 0),
        ("300 sections", _edited(_many_sections), reasons.LIMIT_EXCEEDED, 0, 0),
        ("roles one byte short", _edited(_short_roles), reasons.INCONSISTENT, 0, 0),
    ]
    roles = ("other", "intro", "verse", "buildup", "drop", "chorus", "break", "bridge", "outro")
    return {
        "key_hex": KEY.hex(), "key_id": KEY_ID, "fw_version": 0x000100,
        "cases": [{"name": n, "hex": d.hex(), "reason": r, "sections": s, "phrases": p}
                  for n, d, r, s, p in cases],
        "expect": {
            "sections": [[round(a * 1e6), round(b * 1e6), roles.index(r), round(e * 255)]
                         for a, b, r, e in SECTIONS],
            "phrases_us": [round(t * 1e6) for t in PHRASES],
            # SectionCursor.at(map time) -> [number, role code] (null: no section)
            "cursor": [[t, next(([i, roles.index(s[2])] for i, s in enumerate(SECTIONS)
                                 if s[0] * 1e6 <= t < s[1] * 1e6), None)]
                       for t in (0, 3_999_999, 4_000_000, 9_000_000, 2_000_000, 19_999_999,
                                 20_000_000)],
        },
    }


def main() -> None:
    with open(os.path.join(HERE, "structure.json"), "w") as f:
        json.dump(structure_vectors(), f, indent=1)
        f.write("\n")
    print("wrote tests/vectors/structure.json")


if __name__ == "__main__":
    main()

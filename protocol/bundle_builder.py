"""Building bundle v1 bytes (CPython side; devices only read bundles).

Takes plain arrays, not a BeatMap: protocol/ depends on nothing else in
gridcast. Every limit the reader enforces is checked here first, so a bundle
that builds is a bundle every device of a supporting firmware accepts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np

from gridcast.protocol import bundle_format as fmt
from gridcast.protocol.errors import ProtocolError
from gridcast.protocol.reasons import INCONSISTENT, LIMIT_EXCEEDED


@dataclass(frozen=True)
class BundleSource:
    track_id: str
    audio_sha256: bytes
    bundle_version: int
    created_s: int
    duration_s: float
    tempo_bpm: float
    beats_s: Sequence[float] | np.ndarray
    beat_in_bar: Sequence[int] | np.ndarray
    strength: Sequence[float] | np.ndarray  # 0..1
    envelope_rate_hz: float
    envelopes: tuple[Sequence[float] | np.ndarray, ...]  # bass, mid, high, each 0..1
    min_firmware: int = fmt.version_to_int("0.1.0")
    # Structure (optional): sections as parallel lists, roles by name (bundle_format.ROLES),
    # energy 0..1; phrase starts in seconds. All empty: no structure part is written.
    section_starts_s: Sequence[float] | np.ndarray = ()
    section_ends_s: Sequence[float] | np.ndarray = ()
    section_roles: Sequence[str] = ()
    section_energy: Sequence[float] | np.ndarray = ()
    phrases_s: Sequence[float] | np.ndarray = ()


def _limit(ok: bool, message: str) -> None:
    if not ok:
        raise ProtocolError(LIMIT_EXCEEDED, message)


def signed_part(src: BundleSource, key_id: str) -> list:
    n = len(src.beats_s)
    _limit(n <= fmt.MAX_BEATS, f"{n} beats over the limit {fmt.MAX_BEATS}")
    _limit(len(src.track_id.encode()) <= fmt.MAX_TRACK_ID_BYTES,
           f"track id over {fmt.MAX_TRACK_ID_BYTES} bytes")
    _limit(len(key_id.encode()) <= fmt.MAX_KEY_ID_BYTES, "key id too long")
    duration_us = round(src.duration_s * 1e6)
    _limit(0 <= duration_us <= fmt.MAX_DURATION_US,
           f"duration {src.duration_s:.1f} s over the limit {fmt.MAX_DURATION_US // 10**6} s")
    if len(src.beat_in_bar) != n or len(src.strength) != n:
        raise ProtocolError(INCONSISTENT, "beats, beat_in_bar and strength differ in length")
    times_us = np.round(np.asarray(src.beats_s, dtype=np.float64) * 1e6).astype(np.int64)
    deltas = np.diff(np.r_[0, times_us])
    if (n and (deltas[1:] <= 0).any()) or (n and deltas[0] < 0):
        raise ProtocolError(INCONSISTENT, "beat times must be >= 0 and strictly ascending")
    _limit(not n or int(deltas[1:].max(initial=0)) <= fmt.MAX_BEAT_DELTA_US,
           "two beats more than 10 s apart")
    _limit(not n or int(times_us[-1]) <= duration_us, "a beat lies after the end of the track")
    bib = np.asarray(src.beat_in_bar, dtype=np.int64)
    _limit(not n or (bib.min() >= 1 and bib.max() <= fmt.MAX_METER), "beat_in_bar outside 1..16")
    rate_mhz = round(src.envelope_rate_hz * 1000)
    _limit(0 < rate_mhz <= fmt.MAX_ENV_RATE_MHZ, "envelope rate outside 0..200 Hz")
    frames = len(src.envelopes[0])
    _limit(frames <= fmt.MAX_ENV_FRAMES, f"{frames} envelope frames over {fmt.MAX_ENV_FRAMES}")
    if any(len(e) != frames for e in src.envelopes):
        raise ProtocolError(INCONSISTENT, "the three envelopes differ in length")
    meter = int(bib.max()) if n else 0
    header = [fmt.MAGIC, fmt.SCHEMA_VERSION, src.bundle_version, src.min_firmware,
              src.track_id, bytes(src.audio_sha256), int(src.created_s), key_id, duration_us,
              round(src.tempo_bpm * 1000), meter]
    beats = [n, deltas.astype("<u4").tobytes(), bib.astype(np.uint8).tobytes(),
             _quantize(src.strength).tobytes()]
    envelopes = [rate_mhz, frames, *(_quantize(e).tobytes() for e in src.envelopes)]
    if not len(src.section_starts_s) and not len(src.phrases_s):
        return [header, beats, envelopes]  # the same bytes as before structure existed
    return [header, beats, envelopes, structure_part(src, duration_us)]


def _times_us(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64).reshape(-1) * 1e6).astype(np.int64)


def structure_part(src: BundleSource, duration_us: int) -> list:
    """[sections, starts, ends, roles, energy, phrases, phrase_starts] (bundle_format)."""
    n = len(src.section_starts_s)
    _limit(n <= fmt.MAX_SECTIONS, f"{n} sections over the limit {fmt.MAX_SECTIONS}")
    if not (len(src.section_ends_s) == len(src.section_roles) == len(src.section_energy) == n):
        raise ProtocolError(INCONSISTENT, "section starts, ends, roles and energy differ in "
                            "length")
    starts, ends = _times_us(src.section_starts_s), _times_us(src.section_ends_s)
    if n and ((starts < 0).any() or (ends <= starts).any() or (starts[1:] < ends[:-1]).any()
              or int(ends[-1]) > duration_us):
        raise ProtocolError(INCONSISTENT, "sections must be ordered, not overlap, and lie "
                            "inside the track")
    unknown = [r for r in src.section_roles if r not in fmt.ROLES]
    if unknown:
        raise ProtocolError(INCONSISTENT, f"unknown section role {unknown[0]!r}")
    roles = bytes(fmt.ROLES.index(r) for r in src.section_roles)
    phrases = _times_us(src.phrases_s)
    m = len(phrases)
    _limit(m <= fmt.MAX_PHRASES, f"{m} phrases over the limit {fmt.MAX_PHRASES}")
    if m and ((phrases[0] < 0) or (np.diff(phrases) <= 0).any() or int(phrases[-1]) >
              duration_us):
        raise ProtocolError(INCONSISTENT, "phrase starts must be ascending and inside the track")
    return [n, starts.astype("<u4").tobytes(), ends.astype("<u4").tobytes(), roles,
            _quantize(src.section_energy).tobytes(), m, phrases.astype("<u4").tobytes()]


def _quantize(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    return np.round(v * 255).astype(np.uint8)


def build(src: BundleSource, key: bytes, key_id: str) -> bytes:
    signed = msgpack.packb(signed_part(src, key_id), use_bin_type=True)
    digest = hashlib.sha256(signed).digest()
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    bundle = b"\x92" + signed + msgpack.packb([digest, mac], use_bin_type=True)
    _limit(len(bundle) <= fmt.MAX_BUNDLE_BYTES,
           f"bundle of {len(bundle)} bytes over the limit {fmt.MAX_BUNDLE_BYTES}")
    return bundle



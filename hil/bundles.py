"""Signed bundles for scenarios: a steady grid at one tempo with random envelopes."""

from __future__ import annotations

import numpy as np

from gridcast.protocol import bundle_builder, keys


def make_bundle(key: bytes, minutes: float, track: str = "hil-song", version: int = 1,
                bpm: float = 128.0, seed: int = 0) -> bytes:
    """A bundle signed with ``key``: beats every 60/bpm s from 0.4 s to the end (bars of
    four), random strengths and 50 Hz envelopes drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    seconds = minutes * 60
    beats = np.arange(0.4, seconds - 0.3, 60 / bpm)
    n = len(beats)
    env = tuple(rng.random(int(seconds * 50)) for _ in range(3))
    src = bundle_builder.BundleSource(track, bytes(32), version, 1_795_000_000, seconds, bpm,
                                      beats, [i % 4 + 1 for i in range(n)], rng.random(n),
                                      50.0, env)
    return bundle_builder.build(src, key, keys.key_id(key))

"""The player's fire record, on the real MicroPython interpreter with a stalling LED write."""

import os
import subprocess

import numpy as np

from gridcast.agent import device_files
from gridcast.protocol import bundle_builder, keys
from tests.device.tree import micropython

STALL_US = 3000


def _bundle(path):
    beats = np.arange(0.1, 2.0, 0.25)
    n = len(beats)
    env = tuple(np.zeros(100) for _ in range(3))
    src = bundle_builder.BundleSource("stall", bytes(32), 1, 1_795_000_000, 2.0, 240.0, beats,
                                      [i % 4 + 1 for i in range(n)], np.ones(n) * 0.5, 50.0, env)
    key = bytes(range(32))
    with open(path, "wb") as f:
        f.write(bundle_builder.build(src, key, keys.key_id(key)))


def _run(tmp_path, arg: str) -> list[int]:
    lib = device_files.write_library(str(tmp_path / "lib"), "sim")
    bundle = str(tmp_path / "b.gcb")
    _bundle(bundle)
    script = os.path.join(os.path.dirname(__file__), "device", "player_stall.py")
    run = subprocess.run([micropython(), script, bundle, arg], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "MICROPYPATH": ".frozen:" + lib})
    assert run.returncode == 0, run.stdout + run.stderr
    return [int(word) for word in run.stdout.split()]


def test_long_work_waits_until_the_coming_beat_has_fired(tmp_path):
    """Player.quiet(100 ms) called 50 ms before a beat returns only after that beat."""
    before, after = _run(tmp_path, "quiet")
    assert after == before + 1


def test_a_stalled_beat_reports_the_drift_it_showed(tmp_path):
    """The beat showed STALL_US late: the drift the device records says so (it used to
    stamp the fire before the LED write and report ~0)."""
    drifts = _run(tmp_path, str(STALL_US))
    assert len(drifts) == 3
    for d in drifts:
        assert STALL_US <= d < STALL_US + 2000, drifts

"""The hand-over in the real firmware (MicroPython unix port): ``activate(at_us)`` stores
the new bundle at once, the old map stays lit up to the instant and the new one's play
takes over from it (docs/protocol.md 6).

The device (firmware/app.py's Device, its store, receiver and player) plays bundle A,
receives bundle B by transfer while it plays, and gets ``activate(at_us=H)`` with H 70 ms
after one of A's beats, then ``play(B, start_us=H)``. B's first beat is at its map time 0,
so it is due exactly at H. The device script (tests/device/player_scenarios.py) reports
every beat frame; the instants are checked here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from gridcast.agent import device_files
from gridcast.protocol import bundle_builder, keys
from tests.device.tree import micropython

SCRIPT = os.path.join(os.path.dirname(__file__), "device", "player_scenarios.py")
BEAT_S = 0.25
TOLERANCE_US = 1000


def _write_bundle(path: str, track_id: str, first_beat_s: float, seconds: float = 6.0) -> None:
    beats = np.arange(first_beat_s, seconds - 0.1, BEAT_S)
    n = len(beats)
    env = tuple(np.linspace(0, 1, int(seconds * 50)) for _ in range(3))
    src = bundle_builder.BundleSource(track_id, bytes(32), 1, 1_795_000_000, seconds, 240.0,
                                      beats, [i % 4 + 1 for i in range(n)], np.ones(n) * 0.5,
                                      50.0, env)
    key = bytes(range(32))
    with open(path, "wb") as f:
        f.write(bundle_builder.build(src, key, keys.key_id(key)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("handover")
    lib = device_files.write_library(str(root / "lib"), "sim")
    _write_bundle(str(root / "a.gcb"), "a", 0.1)
    _write_bundle(str(root / "b.gcb"), "b", 0.0)  # B's first beat falls on the hand-over
    return root, lib


def _run(files, mode: int, cwd) -> dict:
    root, lib = files
    os.makedirs(cwd / "bundles")
    shutil.copy(root / "a.gcb", cwd / "bundles" / "active.gcb")
    out = subprocess.run([micropython(), SCRIPT, "handover", str(root / "b.gcb"), str(mode)],
                         capture_output=True, text=True, timeout=60, cwd=cwd,
                         env={**os.environ, "MICROPYPATH": ".frozen:" + lib})
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _split(out: dict) -> tuple[list, list]:
    """(old map's beats, new map's beats) fired, as (index, shown µs, target µs)."""
    old_targets = {out["start_us"] + round((0.1 + k * BEAT_S) * 1e6) for k in range(40)}
    old = [f for f in out["fired"] if f[2] in old_targets]
    new = [f for f in out["fired"] if f[2] not in old_targets]
    return old, new


def _expected_old(out: dict, until_us: int) -> list[int]:
    return [out["start_us"] + round((0.1 + k * BEAT_S) * 1e6) for k in range(40)
            if out["start_us"] + round((0.1 + k * BEAT_S) * 1e6) < until_us]


def test_the_old_map_is_lit_up_to_the_handover_and_the_new_one_from_it(files, tmp_path):
    out = _run(files, 0, tmp_path)
    h = out["handover_us"]
    assert out["activated"] == "activated" and out["again"] == "activated"
    assert out["active_track"] == "b"  # stored and active at once, before the instant
    assert out["replies"] == [None]
    old, new = _split(out)
    # every beat of the old map before H, the last one 70 ms before it, and none after
    assert [f[2] for f in old] == _expected_old(out, h)
    assert h - old[-1][2] == 70_000
    # the new map from H: its first beat is due exactly at H
    assert [f[2] for f in new] == [h + round(k * BEAT_S * 1e6) for k in range(len(new))]
    assert len(new) >= 3
    errors = [shown - target for _, shown, target in old[-2:] + new[:2]]
    assert sorted(map(abs, errors))[1] <= TOLERANCE_US, errors  # shared cores: one may lag


@pytest.mark.parametrize(("mode", "case"), [(1, "stop"), (2, "past"), (3, "rollback")])
def test_a_stop_a_past_instant_or_a_rollback(files, tmp_path, mode, case):
    out = _run(files, mode, tmp_path)
    h = out["handover_us"]
    old, new = _split(out)
    if case == "stop":  # everything ends at once; the waiting play is dropped
        assert out["replies"] == [None, None]
        assert not new and old and old[-1][2] < h - 70_000
    elif case == "past":  # an instant already gone: the old lights end now, as before
        assert out["active_track"] == "b"
        assert old[-1][2] < h - 70_000
        assert [f[2] for f in new][:3] == [h, h + 250_000, h + 500_000]
    else:  # rolled back to the bundle that is lit: it plays on, the new one never starts
        assert out["replies"] == [None, "activated"]
        assert not new
        assert [f[2] for f in old] == _expected_old(out, old[-1][2] + 1)
        assert old[-1][2] > h + 400_000


@pytest.mark.parametrize("mode", [4, 5])
def test_the_same_bundle_again_plays_on_up_to_its_new_start(files, tmp_path, mode):
    """The same track next in a set list (or a restart ahead): no activation, one play of
    the lit bundle from H. Its beats go on up to H, where the map starts again; an
    activation of that same bundle meanwhile (mode 5) changes nothing."""
    out = _run(files, mode, tmp_path)
    h = out["handover_us"]
    assert out["active_track"] == "a" and out["replies"] == [None]
    fired = [f[2] for f in out["fired"]]
    before = [t for t in fired if t < h]
    after = [t for t in fired if t >= h]
    # every beat of the first run before H, the last 70 ms before it (before, the play
    # re-timed the device at once and the beats between the play and H were dark)
    assert before == _expected_old(out, h)
    assert h - before[-1] == 70_000
    # the map again from H: its first beat (map time 0.1 s) 0.1 s after H
    assert after[:3] == [h + 100_000, h + 350_000, h + 600_000]

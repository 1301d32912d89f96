"""Phrases and sections: analysis, the bundle's structure part (old and new readers), and
the device effects in the MicroPython unix port."""

from __future__ import annotations

import importlib
import io
import itertools
import json
import os
import subprocess
import sys

import mir_eval
import numpy as np
import pytest

from gridcast.agent import device_files
from gridcast.host.analysis import features, structure
from gridcast.host.beatmaps import bundling
from gridcast.host.beatmaps.beatmap import BeatMap, Section
from gridcast.host.training import structure_corpus
from gridcast.protocol import (
    bundle_builder,
    bundle_format,
    bundle_reader,
    bundle_structure,
    keys,
    reasons,
)
from gridcast.protocol.errors import ProtocolError
from tests.device.tree import ROOT, micropython, protocol_tree
from tests.vectors import make_structure_vectors

KEY = bytes(range(32))
VECTORS = os.path.join(os.path.dirname(__file__), "vectors")
DEVICE = os.path.join(os.path.dirname(__file__), "device")


# --- analysis ---------------------------------------------------------------------------

def test_phrases_follow_the_novelty_and_prefer_4_8_16_bars():
    nov = np.zeros(129)  # 128 beats of 4/4: 32 bars
    for beat, height in ((32, 5.0), (64, 4.0), (66, 4.5), (96, 3.0), (100, 1.0)):
        nov[beat] = height
    starts = structure.phrase_starts(nov, 1.7, structure.length_prior(4))
    # 66 is higher than 64 but would make phrases of 8.5 and 7.5 bars; 100 is under the
    # threshold.
    assert starts == [0, 32, 64, 96]


def test_roles_from_level_trend_and_place():
    level = np.array([0.2, 0.5, 1.0, 0.3, 0.55, 0.95, 0.1])
    rise = np.array([0.0, 1.5, 0.0, 0.0, 2.0, 0.0, -1.0])
    roles = structure.assign_roles(level, rise, structure.StructureParams())
    assert roles == ["intro", "buildup", "drop", "break", "buildup", "drop", "outro"]
    # A loud part that comes without a build-up or a jump: a chorus.
    flat = structure.assign_roles(np.array([0.85, 0.9, 0.6, 0.8]), np.zeros(4),
                                  structure.StructureParams())
    assert flat == ["chorus", "chorus", "break", "chorus"]
    # A loud phrase that rises steeply into another loud one: a build-up over the beat.
    steep = structure.assign_roles(np.array([0.3, 0.8, 1.0]), np.array([0.0, 2.0, 0.0]),
                                   structure.StructureParams())
    assert steep == ["intro", "buildup", "drop"]


def test_too_few_bars_give_no_structure():
    feats = features.extract_array(np.zeros(22050 * 5, dtype=np.float32), 22050)
    beats = np.arange(0.5, 4.5, 0.5)
    out = structure.analyze(feats, beats, np.arange(len(beats)) % 4 + 1)
    assert len(out.phrases_s) == 0 and out.sections == []


def test_a_composed_track_finds_its_phrases_and_roles():
    """A tuning-range track (seed 19, 111 s), its true beats: the structure analysis's own part."""
    track = structure_corpus.compose(19)
    feats = features.extract_array(track.audio, structure_corpus.SAMPLE_RATE)
    out = structure.analyze(feats, track.beats_s, track.beat_in_bar)
    beat_s = 60.0 / track.bpm
    f = mir_eval.onset.f_measure(track.phrases_s[1:], out.phrases_s[out.phrases_s > beat_s
                                                                   + track.phrases_s[0]],
                                 window=beat_s)[0]
    assert f >= 0.8, (track.phrases_s, out.phrases_s)
    for start, end, role in track.sections:
        middle = (start + end) / 2
        found = next(s.role for s in out.sections if s.start_s <= middle < s.end_s)
        if role in ("drop", "intro", "outro"):
            assert found in ({"drop", "chorus"} if role == "drop" else {role}), (role, found)
    assert out.sections[0].start_s == 0.0 and out.sections[-1].end_s == pytest.approx(
        feats.n_frames / feats.frame_rate_hz)
    assert all(0.0 <= s.energy <= 1.0 and s.source == "analysis" for s in out.sections)


def test_the_analyzer_writes_phrases_and_sections_into_the_map():
    from gridcast.host.analysis import analyzer
    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.evaluation import demo_audio

    signal, _, _ = demo_audio.render(seconds=24.0)
    feats = features.extract_array(signal, demo_audio.SAMPLE_RATE)
    bm = analyzer.analyze_features(feats, AnalyzerParams())
    assert len(bm.phrases) >= 1 and set(bm.phrases) <= set(bm.beats)
    assert bm.sections[0].start_s == 0.0 and bm.sections[-1].end_s == pytest.approx(24.0)
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(bm.sections))
    again = BeatMap.from_dict(bm.to_dict())  # through the map format and back
    assert [s.role for s in again.sections] == [s.role for s in bm.sections]


# --- bundle -----------------------------------------------------------------------------

def _map(sections: list[Section], phrases: list[float]) -> BeatMap:
    beats = np.arange(0.5, 20.0, 0.5)
    n = len(beats)
    return BeatMap(beats=beats, beat_in_bar=np.arange(n) % 4 + 1, beat_strength=np.ones(n) / 2,
                   tempo_bpm=120.0, tempo_curve_times=beats, tempo_curve_bpm=np.full(n, 120.0),
                   envelope_rate_hz=50.0, envelopes={b: np.zeros(1000, np.float32)
                                                     for b in ("bass", "mid", "high")},
                   metadata={"duration_s": 20.0, "audio_file": "s.flac"},
                   phrases=np.array(phrases), sections=sections)


def _read(data: bytes):
    return bundle_reader.verify(io.BytesIO(data), len(data), {"k": KEY}, 0x000100)


def test_a_map_s_structure_travels_in_the_bundle():
    sections = [Section(0.0, 8.5, "intro", 0.2), Section(8.5, 16.5, "drop", 0.9),
                Section(16.5, 25.0, "outro", 0.1)]  # the last overruns the track: clipped
    data = bundle_builder.build(bundling.source_from_map(_map(sections, [0.5, 8.5, 16.5])),
                                KEY, "k")
    info = _read(data)
    f = io.BytesIO(data)
    got = [bundle_structure.read_section(f, info, i) for i in range(info.section_count)]
    assert got == [(0, 8_500_000, 1, 51), (8_500_000, 16_500_000, 4, 230),
                   (16_500_000, 20_000_000, 8, 26)]
    assert [bundle_structure.read_phrase_us(f, info, i) for i in range(info.phrase_count)] == [
        500_000, 8_500_000, 16_500_000]


def test_the_summary_and_the_plot_show_the_structure(tmp_path):
    from gridcast.host.beatmaps import plot

    bm = _map([Section(0.0, 8.5, "intro", 0.2), Section(8.5, 16.5, "drop", 0.9),
               Section(16.5, 20.0, "outro", 0.1)], [0.5, 8.5, 16.5])
    assert structure.describe(bm) == "3 phrases; intro 4 bars | drop 4 | outro 2"
    assert structure.describe(_map([], [])) == ""
    out = plot.render(bm, str(tmp_path / "map.png"))
    assert os.path.getsize(out) > 10_000


def test_a_map_without_structure_gives_the_bytes_of_before():
    src = bundling.source_from_map(_map([], []))
    assert len(bundle_builder.signed_part(src, "k")) == 3
    assert _read(bundle_builder.build(src, KEY, "k")).section_count == 0


def test_the_builder_refuses_what_a_device_would():
    bm = _map([Section(0.0, 5.0, "intro", 0.2), Section(4.0, 9.0, "drop", 0.9)], [])
    with pytest.raises(ProtocolError) as err:
        bundle_builder.build(bundling.source_from_map(bm), KEY, "k")
    assert err.value.code == reasons.INCONSISTENT


def test_a_reader_from_before_structure_reads_a_new_bundle(tmp_path):
    """The device code of the commit before structure existed, on a bundle that has it."""
    folder = tmp_path / "old" / "oldproto"
    folder.mkdir(parents=True)
    for name in ("__init__", "bundle_format", "bundle_reader", "errors", "reasons",
                 "hmac_sha256", "version"):
        text = subprocess.run(["git", "-C", ROOT, "show", f"e304278:protocol/{name}.py"],
                              capture_output=True, text=True, check=True).stdout
        (folder / f"{name}.py").write_text(text)
    sys.path.insert(0, str(tmp_path / "old"))
    try:
        old = importlib.import_module("oldproto.bundle_reader")
        data = bytes.fromhex(make_structure_vectors.structure_vectors()["cases"][0]["hex"])
        info = old.verify(io.BytesIO(data), len(data), {"test0001": KEY}, 0x000100)
        assert info.beat_count == 40 and not hasattr(info, "section_count")
    finally:
        sys.path.remove(str(tmp_path / "old"))
        for name in [m for m in sys.modules if m.startswith("oldproto")]:
            del sys.modules[name]


def test_committed_structure_vectors_match_the_builder():
    with open(os.path.join(VECTORS, "structure.json")) as f:
        committed = json.load(f)
    assert json.loads(json.dumps(make_structure_vectors.structure_vectors())) == committed


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_structure_vectors_pass(interpreter, tmp_path):
    runner = os.path.join(DEVICE, "structure_vector_runner.py")
    if interpreter == "cpython":
        run = subprocess.run([sys.executable, runner, VECTORS], capture_output=True, text=True,
                             timeout=60)
    else:
        tree = protocol_tree(str(tmp_path))
        run = subprocess.run([micropython(), runner, VECTORS], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "MICROPYPATH": tree}, cwd=tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith(" passed, 0 failed")
    assert int(run.stdout.split()[-4]) >= 30


# --- device -----------------------------------------------------------------------------

BEAT_S = 0.125
SECTIONS = ((0.0, 1.0, "intro", 0.2), (1.0, 2.0, "drop", 1.0), (2.0, 3.0, "break", 0.3))


def _structured_bundle(path: str, seconds: float, sections=SECTIONS) -> None:
    beats = np.arange(0.0625, seconds - 0.01, BEAT_S)
    n = len(beats)
    src = bundle_builder.BundleSource(
        "structure", bytes(32), 1, 1_795_000_000, seconds, 480.0, beats,
        [i % 4 + 1 for i in range(n)], np.full(n, 0.5), 50.0,
        tuple(np.full(int(seconds * 50), 0.5) for _ in range(3)),
        section_starts_s=[s[0] for s in sections], section_ends_s=[s[1] for s in sections],
        section_roles=[s[2] for s in sections], section_energy=[s[3] for s in sections],
        phrases_s=[s[0] for s in sections])
    with open(path, "wb") as f:
        f.write(bundle_builder.build(src, KEY, keys.key_id(KEY)))


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    root = tmp_path_factory.mktemp("structure")
    lib = device_files.write_library(str(root / "lib"), "sim")

    def run(scenario: str, path: str, arg: int) -> dict:
        out = subprocess.run([micropython(), os.path.join(DEVICE, "structure_scenarios.py"),
                              scenario, path, str(arg)], capture_output=True, text=True,
                             timeout=60, cwd=root,
                             env={**os.environ, "MICROPYPATH": ".frozen:" + lib})
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    run.root = root  # type: ignore[attr-defined]
    return run


def test_the_palette_changes_at_the_section_boundary_and_a_drop_hits(device):
    path = str(device.root / "sections.gcb")
    _structured_bundle(path, 3.0)
    beats = device("play", path, 23)["beats"]
    by_index = {i: tuple(rgb) for i, *rgb in beats}
    first_drop, first_break = 8, 16  # beats at 1.0625 s and 2.0625 s
    intro_down = by_index[4]  # a downbeat of the intro: its palette's colour at 128 + 64
    assert intro_down == tuple(c * 192 >> 8 for c in bundle_format_palette(0))
    # the last intro beat keeps the intro's palette; the boundary's beat is the drop's
    # hit: full white at full level; the drop's next downbeat has the drop's own palette
    assert by_index[first_drop - 1] != by_index[first_drop] == (254, 254, 254)  # 255 * 255 >> 8
    assert by_index[first_drop + 4] == tuple(c * 192 >> 8 for c in bundle_format_palette(1))
    # a break: its palette at half the level
    assert by_index[first_break] == tuple(c * 96 >> 8 for c in bundle_format_palette(2))
    assert max(max(by_index[i]) for i in range(first_break, first_break + 7)) <= 96


def bundle_format_palette(number: int) -> tuple[int, int, int]:
    from gridcast.firmware.leds import PALETTES

    return PALETTES[number % len(PALETTES)]


def test_sections_cost_little_per_beat(device):
    plain, structured = str(device.root / "plain.gcb"), str(device.root / "long.gcb")
    _structured_bundle(plain, 600.0, sections=())
    _structured_bundle(structured, 600.0, sections=tuple(
        (k * 15.0, (k + 1) * 15.0, bundle_format.ROLES[1 + k % 8], 0.5) for k in range(40)))
    base = device("cost", plain, 1000)["per_beat_us"]
    with_sections = device("cost", structured, 1000)["per_beat_us"]
    print(f"\nper scheduled beat (unix port): {base:.1f} us without sections, "
          f"{with_sections:.1f} us with 40 sections")
    assert with_sections <= 1.5 * base + 10

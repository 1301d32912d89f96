import json
import os
from pathlib import Path

import numpy as np
import pytest

from gridcast.host.analysis import analyzer
from gridcast.host.beatmaps import beatmap
from gridcast.host.errors import BeatMapError


@pytest.fixture(scope="module")
def song_map(demo_song):
    return analyzer.analyze_file(demo_song[0])


@pytest.mark.parametrize("ext", [".json", ".msgpack"])
def test_round_trip_keeps_everything(tmp_path, song_map, ext):
    path = str(tmp_path / f"map{ext}")
    beatmap.save(song_map, path)
    back = beatmap.load(path)
    assert np.allclose(back.beats, song_map.beats, atol=1e-4)
    assert list(back.beat_in_bar) == list(song_map.beat_in_bar)
    assert back.tempo_bpm == pytest.approx(song_map.tempo_bpm, abs=1e-3)
    assert back.envelope_rate_hz == 50.0
    assert len(back.envelopes["bass"]) == len(song_map.envelopes["bass"])
    assert back.metadata["audio_sha256"] == song_map.metadata["audio_sha256"]


def test_structure_round_trips(tmp_path, song_map):
    song_map.phrases = np.array([0.5, 8.5])
    song_map.sections = [beatmap.Section(0.5, 8.5, "intro", 0.3),
                         beatmap.Section(8.5, 20.0, "drop", 0.9, "rekordbox")]
    song_map.cues = [beatmap.Cue(8.5, "Drop", "hot", "#ff0000"),
                     beatmap.Cue(1.0, "", "loop", "", 3.0)]
    path = str(tmp_path / "map.json")
    try:
        beatmap.save(song_map, path)
    finally:
        song_map.phrases, song_map.sections, song_map.cues = np.zeros(0), [], []
    back = beatmap.load(path)
    assert list(back.phrases) == [0.5, 8.5]
    assert [(s.role, s.source) for s in back.sections] == [("intro", "analysis"),
                                                           ("drop", "rekordbox")]
    assert back.cues[0].name == "Drop" and back.cues[1].end_s == 3.0


def test_json_has_the_documented_top_level_fields(tmp_path, song_map):
    path = str(tmp_path / "map.json")
    beatmap.save(song_map, path)
    data = json.loads(Path(path).read_text())
    assert {"beats", "beat_in_bar", "tempo_bpm", "beat_strength", "tempo_curve", "envelopes",
            "metadata", "version", "history"} <= set(data)
    assert data["beats"] == sorted(data["beats"])
    assert data["metadata"]["analyzer"]["name"] == "gridcast"
    assert len(data["metadata"]["audio_sha256"]) == 64


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="other"), "not a gridcast beat map"),
    (lambda d: d["beats"].__setitem__(3, "x"), r"at `\$.beats\[3\]`"),
    (lambda d: d["beats"].__setitem__(3, d["beats"][2]), "strictly ascending"),
    (lambda d: d["beat_in_bar"].pop(), "entries but there are"),
    (lambda d: d["envelopes"].update(frame_rate_hz=0), r"\$.envelopes.frame_rate_hz"),
    (lambda d: d.update(format_version=99), "unsupported version 99"),
    (lambda d: d.update(sections=[{"start_s": 0, "end_s": 8, "role": "solo", "energy": 1}]),
     r"unknown role 'solo'.*\$.sections\[0\].role"),
    (lambda d: d.update(sections=[{"start_s": 0, "end_s": 8, "role": "intro", "energy": 1},
                                  {"start_s": 4, "end_s": 9, "role": "drop", "energy": 1}]),
     "must not overlap"),
    (lambda d: d.update(phrases=[8.0, 4.0]), "strictly ascending"),
    (lambda d: d.update(cues=[{"time_s": 1.0, "kind": "flag"}]), "unknown cue kind"),
])
def test_malformed_maps_name_the_file_and_the_place(tmp_path, song_map, mutate, message):
    data = song_map.to_dict()
    mutate(data)
    path = str(tmp_path / "bad.json")
    Path(path).write_text(json.dumps(data))
    with pytest.raises(BeatMapError, match=message) as err:
        beatmap.load(path)
    assert str(err.value).startswith(path)


def test_a_failed_save_leaves_the_old_file_intact(tmp_path, song_map, monkeypatch):
    path = str(tmp_path / "map.json")
    beatmap.save(song_map, path)
    before = Path(path).read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        beatmap.save(song_map, path)
    assert Path(path).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["map.json"]

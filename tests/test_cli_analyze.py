"""The analyze command end to end, through main() as a user calls it."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gridcast.host.beatmaps import beatmap
from gridcast.host.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDCAST_CACHE_DIR", str(tmp_path / "cache"))


def test_single_file_writes_a_map_next_to_the_audio(song_copy, capsys):
    assert main(["analyze", song_copy]) == 0
    out = song_copy.replace(".wav", ".beatmap.json")
    bm = beatmap.load(out)
    assert bm.version == 1 and len(bm.beats) > 15
    assert "beats" in capsys.readouterr().err


def test_batch_with_a_bad_file_reports_it_and_finishes_the_others(tmp_path, demo_song, capsys):
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(demo_song[0], music / "a.wav")
    shutil.copy(demo_song[0], music / "b.wav")
    (music / "broken.mp3").write_bytes(b"ID3 definitely not an mp3" * 10)
    out = tmp_path / "maps"
    code = main(["analyze", str(music), "-o", str(out), "-j", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"gridcast: {music / 'broken.mp3'}: not a readable audio file" in err
    assert sorted(os.listdir(out)) == ["a.beatmap.json", "b.beatmap.json"]
    assert "3 files: 2 written, 0 unchanged, 1 failed" in err


def test_unchanged_files_are_skipped_by_audio_hash(song_copy, capsys):
    assert main(["analyze", song_copy]) == 0
    out = song_copy.replace(".wav", ".beatmap.json")
    stamp = os.stat(out).st_mtime_ns
    capsys.readouterr()
    assert main(["analyze", song_copy]) == 0
    assert "unchanged" in capsys.readouterr().err
    assert os.stat(out).st_mtime_ns == stamp


def test_a_newer_analyzer_analyzes_again_but_keeps_a_hand_edited_map(song_copy, capsys):
    assert main(["analyze", song_copy]) == 0
    out = song_copy.replace(".wav", ".beatmap.json")
    old = json.loads(Path(out).read_text())
    old["metadata"]["analyzer"]["version"] = "0.4.0"  # what an older gridcast wrote
    Path(out).write_text(json.dumps(old))
    assert main(["analyze", song_copy]) == 0
    again = beatmap.load(out)
    assert again.version == 2 and again.metadata["analyzer"]["version"] != "0.4.0"
    # A map a person edited (grid editor) is never analyzed over by a newer analyzer.
    edited = again.to_dict()
    edited["metadata"]["analyzer"]["version"] = "0.4.0"
    edited["history"].append({"version": 3, "change": "edit", "by": "desk"})
    edited["version"] = 3
    Path(out).write_text(json.dumps(edited))
    capsys.readouterr()
    assert main(["analyze", song_copy]) == 0
    assert "unchanged" in capsys.readouterr().err and beatmap.load(out).version == 3


def test_changed_audio_is_analyzed_again(song_copy):
    assert main(["analyze", song_copy]) == 0
    signal, sr = sf.read(song_copy, dtype="float32")
    sf.write(song_copy, signal * 0.5, sr)
    assert main(["analyze", song_copy]) == 0
    bm = beatmap.load(song_copy.replace(".wav", ".beatmap.json"))
    assert bm.version == 2


def test_a_correction_makes_a_new_version_and_keeps_the_old(song_copy, tmp_path):
    assert main(["analyze", song_copy]) == 0
    out = song_copy.replace(".wav", ".beatmap.json")
    v1 = beatmap.load(out)
    fix = tmp_path / "fix.json"
    fix.write_text(json.dumps({"offset_ms": 20, "meter": 3}))
    assert main(["analyze", song_copy, "--overrides", str(fix)]) == 0
    v2 = beatmap.load(out)
    kept = beatmap.load(out.replace(".beatmap.json", ".beatmap.v1.json"))
    assert v2.version == 2 and v2.meter == 3
    assert np.allclose(v2.beats, v1.beats + 0.020, atol=1e-3)
    assert np.allclose(kept.beats, v1.beats)
    assert v2.history[-1]["edits"] == {"offset_ms": 20, "meter": 3}
    assert v2.history[0]["version"] == 1


def test_a_failed_run_does_not_touch_the_existing_map(song_copy, capsys):
    assert main(["analyze", song_copy]) == 0
    out = song_copy.replace(".wav", ".beatmap.json")
    before = Path(out).read_bytes()
    Path(song_copy).write_bytes(b"RIFF0000WAVEjunk")
    assert main(["analyze", song_copy]) == 1
    assert "gridcast: " + song_copy in capsys.readouterr().err
    assert Path(out).read_bytes() == before


def test_msgpack_output(song_copy, tmp_path):
    out = str(tmp_path / "song.msgpack")
    assert main(["analyze", song_copy, "-o", out]) == 0
    assert len(beatmap.load(out).beats) > 15


def test_missing_path_is_one_line_error(tmp_path, capsys):
    missing = str(tmp_path / "nope.flac")
    assert main(["analyze", missing]) == 1
    assert capsys.readouterr().err.strip() == f"gridcast: {missing}: no such file (check the path)"

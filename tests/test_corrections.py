import json

import numpy as np
import pytest

from gridcast.host.analysis import analyzer
from gridcast.host.beatmaps import corrections
from gridcast.host.errors import BeatMapError


@pytest.fixture(scope="module")
def base(demo_song):
    return analyzer.analyze_file(demo_song[0])


def test_offset_shifts_every_beat_and_keeps_the_base(base):
    before = base.beats.copy()
    out = corrections.apply(base, corrections.Corrections(offset_ms=25))
    assert np.allclose(out.beats, before + 0.025)
    assert np.allclose(base.beats, before)


def test_delete_and_add_beats(base):
    victim = float(base.beats[5])
    out = corrections.apply(base, corrections.Corrections(delete_beats=(victim + 0.02,),
                                                          add_beats=(0.01,)))
    assert len(out.beats) == len(base.beats)
    assert np.min(np.abs(out.beats - victim)) > 0.1
    assert out.beats[0] == pytest.approx(0.01)
    assert np.all(np.diff(out.beats) > 0)


def test_meter_and_downbeat_rephase_the_bars(base):
    target = float(base.beats[2])
    out = corrections.apply(base, corrections.Corrections(meter=3, downbeat_at=target))
    assert out.meter == 3
    assert out.beat_in_bar[2] == 1 and out.beat_in_bar[5] == 1 and out.beat_in_bar[3] == 2


def test_deleting_where_no_beat_is_fails_clearly(base):
    gap = float(base.beats[3] + base.beats[4]) / 2
    with pytest.raises(BeatMapError, match="no beat within 70 ms"):
        corrections.apply(base, corrections.Corrections(delete_beats=(gap,)))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"offset": 3}', "unknown key 'offset'"),
    ('{"offset_ms": "late"}', "`offset_ms` must be a number"),
    ('{"delete_beats": [1.0, -2]}', r"`delete_beats\[1\]` must be a time"),
    ('{"meter": 2.5}', "whole number"),
])
def test_malformed_override_files_are_rejected_precisely(tmp_path, content, message):
    path = tmp_path / "fix.json"
    path.write_text(content)
    with pytest.raises(BeatMapError, match=message) as err:
        corrections.load_override_file(str(path))
    assert str(err.value).startswith(str(path))


def test_override_file_values_and_flags_merge(tmp_path):
    path = tmp_path / "fix.json"
    path.write_text(json.dumps({"offset_ms": 10, "meter": 3}))
    corr = corrections.load_override_file(str(path)).merged(
        corrections.Corrections(offset_ms=-5))
    assert corr.offset_ms == -5 and corr.meter == 3
    assert corr.edits() == {"offset_ms": -5, "meter": 3}

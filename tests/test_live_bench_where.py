"""bench/live.py --where: clips chosen by their row in the set's MANIFEST.tsv."""

from __future__ import annotations

import numpy as np
import pytest

from bench.live import manifest_where
from gridcast.host.evaluation.evaluate import Clip


def _set(tmp_path):
    (tmp_path / "MANIFEST.tsv").write_text(
        "id\thumanized_ms\ttempo_curve\n"
        "a\t0.0\tsteady\nb\t4.4\tsteady\nc\t0\trubato\n")
    return [Clip(i, f"audio/{i}.flac", np.arange(3.0), None) for i in "abc"]


def test_numbers_compare_as_numbers_and_conditions_narrow(tmp_path):
    clips = _set(tmp_path)
    assert [c.id for c in manifest_where(str(tmp_path), clips, ["humanized_ms=0"])] == ["a", "c"]
    assert [c.id for c in manifest_where(str(tmp_path), clips,
                                         ["humanized_ms=0", "tempo_curve=steady"])] == ["a"]


def test_a_bad_condition_says_what_to_give(tmp_path):
    clips = _set(tmp_path)
    with pytest.raises(ValueError, match=r"give COLUMN=VALUE .*\(id, humanized_ms, tempo_curve\)"):
        manifest_where(str(tmp_path), clips, ["bpm=120"])
    with pytest.raises(ValueError, match="give COLUMN=VALUE"):
        manifest_where(str(tmp_path), clips, ["humanized_ms"])
    with pytest.raises(ValueError, match=r"no clip of .* matches"):
        manifest_where(str(tmp_path), clips, ["tempo_curve=drift"])
    with pytest.raises(ValueError, match=r"MANIFEST\.tsv does not exist"):
        manifest_where(str(tmp_path / "elsewhere"), clips, ["humanized_ms=0"])

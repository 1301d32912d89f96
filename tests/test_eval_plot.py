import json
import os
import shutil

import numpy as np
import pytest

from gridcast.host.cli import main
from gridcast.host.errors import DatasetError
from gridcast.host.evaluation import evaluate
from tests.conftest import SHARED


@pytest.fixture
def dataset(tmp_path, demo_song):
    path, beats, bib = demo_song
    (tmp_path / "audio").mkdir()
    (tmp_path / "annotations").mkdir()
    for name in ("one", "two"):
        shutil.copy(path, tmp_path / "audio" / f"{name}.wav")
        lines = [f"{t:.4f}\t{b}" for t, b in zip(beats, bib, strict=True)]
        (tmp_path / "annotations" / f"{name}.beats").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_eval_json_has_per_clip_and_mean_metrics(dataset, capsys):
    assert main(["eval", str(dataset), "--json", "-j", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["mean"]) == {"f_measure", "cemgil", "cmlt", "amlt", "downbeat_f"}
    assert [c["id"] for c in result["clips"]] == ["one", "two"]
    assert result["mean"]["f_measure"] > 0.95
    assert result["baselines"] == {}


def test_scores_punish_a_shifted_beat_grid():
    ref = np.arange(0, 30, 0.5)
    good = evaluate.score(ref, None, ref + 0.01, None)
    off = evaluate.score(ref, None, ref + 0.25, None)
    assert good["f_measure"] == pytest.approx(1.0)
    assert off["f_measure"] == pytest.approx(0.0)
    assert good["downbeat_f"] is None


def test_a_folder_without_annotations_is_a_dataset_error(tmp_path):
    (tmp_path / "audio").mkdir()
    with pytest.raises(DatasetError, match="expected sub-folders audio/ and annotations/"):
        evaluate.load_dataset(str(tmp_path))


def test_plot_writes_a_png(tmp_path, song_copy):
    assert main(["analyze", song_copy]) == 0
    png = tmp_path / "map.png"
    assert main(["plot", song_copy.replace(".wav", ".beatmap.json"), "-o", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_demo_scores_its_own_song(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "12", "--json",
                 "--no-devices"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["analysis"]["scores"]["f_measure"] > 0.95
    assert os.path.exists(result["analysis"]["plot"])
    assert "devices" not in result


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "beats")),
                    reason="the shared evaluation data sits beside the repository only in CI")
def test_real_clips_stay_above_the_target():
    result = evaluate.evaluate(os.path.join(SHARED, "beats"), workers=2)
    assert result["mean"]["f_measure"] >= 0.85

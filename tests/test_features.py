import numpy as np
import pytest

from gridcast.host.analysis import features
from tests.conftest import click_track


def test_frames_sit_on_an_exact_100_hz_grid():
    x, _ = click_track(120, 5.0)
    f = features.extract_array(x, 22050)
    assert f.frame_rate_hz == 100.0
    assert f.n_frames == int(np.floor((len(x) - 1) * 100 / 22050)) + 1
    assert f.band_energy_db.shape == (f.n_frames, 3)
    assert f.chroma.shape == (f.n_frames, 12)


def test_streaming_blocks_give_the_same_features_as_one_array():
    x, _ = click_track(100, 6.0)
    whole = features.extract_array(x, 22050)
    blocks = [x[i:i + 3001] for i in range(0, len(x), 3001)]
    streamed = features.extract(blocks, 22050, len(x))
    assert np.allclose(whole.flux, streamed.flux, atol=1e-4)
    assert np.allclose(whole.chroma, streamed.chroma, atol=1e-4)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000, 96000])
def test_onset_peaks_do_not_depend_on_the_sample_rate(sr):
    x, beats = click_track(120, 4.0, sr=sr)
    f = features.extract_array(x, sr)
    peaks = np.flatnonzero(f.flux > 0.5 * f.flux.max()) / 100.0
    for b in beats:
        assert np.min(np.abs(peaks - b)) <= 0.02

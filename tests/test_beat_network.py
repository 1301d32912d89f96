"""The beat network: its input, its numpy forward pass, and the shipped weights."""

import numpy as np
import pytest

from gridcast.host.analysis import beat_network, features
from gridcast.host.evaluation import demo_audio


def random_network(rng: np.random.Generator, n_in: int = 48, channels: int = 5,
                   dilations: tuple[int, ...] = (1, 2, 4)) -> beat_network.Network:
    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape).astype(np.float32)

    blocks = tuple((d, w(beat_network.KERNEL, channels, channels), w(channels),
                    w(channels, channels), w(channels)) for d in dilations)
    return beat_network.Network(w(n_in), np.abs(w(n_in)) + 0.5, w(n_in, channels), w(channels),
                                blocks, w(channels, 2), w(2), "test")


def reference_forward(band_mag: np.ndarray, net: beat_network.Network) -> np.ndarray:
    """The same network written as loops over frames: zero outside the signal,
    tap k of a dilated layer reads frame t + (k - 1) * dilation."""
    x = (beat_network.network_input(band_mag) - net.mean) / net.std
    elu = lambda v: np.where(v > 0, v, np.exp(np.minimum(v, 0)) - 1)  # noqa: E731
    h = elu(x @ net.w_in + net.b_in)
    n = len(h)
    for d, w_dil, b_dil, w_mix, b_mix in net.blocks:
        a = np.tile(b_dil, (n, 1)).astype(np.float64)
        for t in range(n):
            for k in range(beat_network.KERNEL):
                src = t + (k - 1) * d
                if 0 <= src < n:
                    a[t] += h[src] @ w_dil[k]
        h = h + elu(a) @ w_mix + b_mix
    return 1 / (1 + np.exp(-(h @ net.w_out + net.b_out)))


def test_input_is_log_magnitude_and_its_rise():
    mag = np.zeros((6, 24), dtype=np.float32)
    mag[3:] = 9.0  # a note starts at frame 3
    x = beat_network.network_input(mag)
    assert x.shape == (6, 48)
    np.testing.assert_allclose(x[:, :24], np.log10(1 + mag), rtol=1e-6)
    rise = x[:, 24:]
    assert np.all(rise >= 0)
    np.testing.assert_allclose(rise[3], 1.0, rtol=1e-6)  # log10(10) - log10(1)
    assert np.all(rise[[0, 1, 2, 4, 5]] == 0)


def test_dilated_layers_match_a_frame_by_frame_reference():
    rng = np.random.default_rng(0)
    net = random_network(rng)
    mag = rng.uniform(0, 20, (40, 24)).astype(np.float32)
    np.testing.assert_allclose(beat_network.activations(mag, net), reference_forward(mag, net),
                               atol=1e-5)


def test_elu_is_in_place_and_within_float32_rounding_of_expm1():
    x = np.r_[np.linspace(-20, 5, 10_001), -1e-30, 0.0, 1e-30].astype(np.float32)
    want = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    y = x.copy()
    out = beat_network._elu(y)
    assert out is y and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=0, atol=2.4e-7)
    assert np.all(out[x > 0] == x[x > 0])


def test_empty_input_gives_no_frames():
    assert beat_network.activations(np.zeros((0, 24), dtype=np.float32)).shape == (0, 2)


@pytest.fixture(scope="module")
def demo_activation() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    signal, beats, bib = demo_audio.render(seconds=16.0, bpm=112.0)
    feats = features.extract_array(signal, demo_audio.SAMPLE_RATE)
    return beat_network.activations(feats.band_mag), beats, bib


def peak_near(act: np.ndarray, times: np.ndarray) -> np.ndarray:
    idx = np.round(times * 100).astype(int)
    return np.array([act[max(0, i - 2):i + 3].max() for i in idx])


def test_shipped_model_fires_on_the_beats_not_between_them(demo_activation):
    act, beats, _ = demo_activation
    assert act.shape[1] == 2 and np.all((act >= 0) & (act <= 1))
    inner = beats[2:-2]
    on = peak_near(act[:, 0], inner)
    off = peak_near(act[:, 0], inner + 30 / 112)  # the off-beats, where the hi-hat also plays
    assert np.median(on) > 0.4
    assert np.median(on) > 4 * np.median(off)


def test_shipped_model_marks_downbeats_above_other_beats(demo_activation):
    act, beats, bib = demo_activation
    d = peak_near(act[:, 1], beats)
    assert np.median(d[bib == 1]) > 2 * np.median(d[bib != 1])

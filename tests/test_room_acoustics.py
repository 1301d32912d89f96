"""The bench's microphone in a room (host/evaluation/room_acoustics.py): the reverberation
decays as asked, the direct sound and the crowd stand where asked, nothing moves the beat."""

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from gridcast.host.evaluation.room_acoustics import RoomAcoustics

RATE = 16_000


def decay_time_s(ir: np.ndarray, rate: int) -> float:
    """RT60 from Schroeder's backward integral: the -5 to -25 dB slope, times three."""
    energy = np.cumsum((ir ** 2)[::-1])[::-1]
    level = 10 * np.log10(energy / energy[0])
    t = np.arange(ir.size) / rate
    span = (level <= -5) & (level >= -25)
    slope = np.polyfit(t[span], level[span], 1)[0]  # dB per second
    return -60.0 / slope


def band(ir: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    if low is None:
        sos = butter(4, high, "lowpass", fs=RATE, output="sos")
    else:
        sos = butter(4, low, "highpass", fs=RATE, output="sos")
    return sosfiltfilt(sos, ir[1:])  # the tail alone


@pytest.mark.parametrize("reverb_s", [0.8, 1.6])
def test_the_tail_falls_60_db_in_the_reverb_time_and_the_highs_faster(reverb_s):
    ir = RoomAcoustics(reverb_s=reverb_s).impulse_response(RATE)
    low = decay_time_s(band(ir, None, 300.0), RATE)
    high = decay_time_s(band(ir, 3000.0, None), RATE)
    assert low == pytest.approx(reverb_s, rel=0.15)
    assert high == pytest.approx(0.5 * reverb_s, rel=0.2)


@pytest.mark.parametrize("drr_db", [-5.0, 0.0, 6.0])
def test_the_direct_sound_stands_drr_above_the_tail_and_comes_first(drr_db):
    ir = RoomAcoustics(reverb_s=1.0, drr_db=drr_db).impulse_response(RATE)
    assert ir[0] == 1.0
    assert np.all(ir[1:int(0.008 * RATE)] == 0)  # the first reflection after 8 ms
    assert 10 * np.log10(1.0 / np.sum(ir[1:] ** 2)) == pytest.approx(drr_db, abs=0.01)


def clicks(seconds: float = 6.0, bpm: float = 120.0) -> np.ndarray:
    x = np.zeros(int(seconds * RATE), np.float32)
    beats = np.arange(0.5, seconds - 0.5, 60 / bpm)
    burst = np.random.default_rng(1).standard_normal(80) * np.exp(-np.arange(80) / 20)
    for b in beats:
        i = int(b * RATE)
        x[i:i + 80] += 0.5 * burst
    return x


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_the_crowd_sits_snr_below_the_music_at_the_microphone(snr_db):
    x = clicks()
    music, crowd = RoomAcoustics(reverb_s=0.8, crowd_snr_db=snr_db).parts(x, RATE)
    measured = 10 * np.log10(np.mean(music ** 2) / np.mean(crowd ** 2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    # the crowd is not silent between its claps, and it changes from clip to clip
    other = RoomAcoustics(reverb_s=0.8, crowd_snr_db=snr_db).parts(x, RATE, index=1)[1]
    assert not np.allclose(crowd, other)


def test_the_beat_stays_where_it_was_heard():
    """The direct sound has no delay: the mixed signal's onsets sit on the dry ones."""
    x = clicks()
    wet = RoomAcoustics(reverb_s=1.6, drr_db=-3.0, crowd_snr_db=20.0).apply(x, RATE)
    lags = np.arange(-80, 81)
    corr = [float(np.dot(x[100 + k:-100 + k], wet[100:-100])) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert wet.dtype == np.float32 and wet.size == x.size
    assert np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)


def test_a_dry_room_changes_nothing_and_a_seed_is_one_room():
    x = clicks()
    assert np.array_equal(RoomAcoustics().apply(x, RATE), x)
    a = RoomAcoustics(reverb_s=0.8, crowd_snr_db=10.0, seed=3).apply(x, RATE)
    b = RoomAcoustics(reverb_s=0.8, crowd_snr_db=10.0, seed=3).apply(x, RATE)
    c = RoomAcoustics(reverb_s=0.8, crowd_snr_db=10.0, seed=4).apply(x, RATE)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs, words", [
    ({"reverb_s": 0.05}, "reverb time 0.05 s is out of range"),
    ({"reverb_s": 9.0}, "0.1-5.0 s"),
    ({"reverb_s": 1.0, "drr_db": 30.0}, "direct-to-reverberant ratio 30.0 dB"),
    ({"crowd_snr_db": 80.0}, "crowd level 80.0 dB below the music"),
])
def test_a_room_out_of_range_is_refused_with_the_range(kwargs, words):
    with pytest.raises(ValueError, match=words):
        RoomAcoustics(**kwargs)

"""The training material: composed scores, their tempo maps and the network's targets.

Rendering needs FluidSynth and the training extra, which CI does not install;
what decides the labels (scores, beat times, targets) is pure numpy and is
tested here.
"""

import numpy as np
import pytest

from gridcast.host.training import dataset, scoregen


@pytest.mark.parametrize("seed", range(12))
def test_composed_notes_sit_on_the_meter_grid(seed):
    rng = np.random.default_rng(seed)
    score, bpm = scoregen.compose(rng, 30.0)
    lo, hi = score.meter.bpm_range
    assert lo <= bpm <= hi
    assert score.notes, "a score with no notes"
    grid = 12 * score.meter.pulses_per_beat  # 16ths and triplet 16ths both land on it
    for note in score.notes:
        assert 0 <= note.pitch <= 127 and 1 <= note.velocity <= 127
        assert note.length > 0
        assert note.beat >= -score.pickup_beats - 1e-9
        assert note.beat <= score.n_bars * score.meter.beats_per_bar
        steps = note.beat * grid
        assert abs(steps - round(steps)) < 1e-6, (note, score.meter)


def test_every_meter_is_composed():
    seen = {scoregen.compose(np.random.default_rng(s), 20.0)[0].meter.name for s in range(200)}
    assert seen == {m.name for m in scoregen.METERS}


def test_the_band_profile_is_drums_in_popular_meters_with_a_backbeat():
    scores = [scoregen.compose(np.random.default_rng([31, s]), 20.0, "band") for s in range(120)]
    meters = [score.meter.name for score, _ in scores]
    assert set(meters) <= {m.name for m in scoregen.BAND_METERS}
    assert meters.count("4/4") > 0.7 * len(scores)
    with_drums = [score for score, _ in scores if any(t.startswith("drums_") for t in score.tags)]
    assert len(with_drums) > 0.85 * len(scores)
    assert not any("drums_halftime" in score.tags for score in with_drums)
    assert all(score.tags[1:] and "chorale" not in score.tags for score, _ in scores)
    for score, bpm in scores:
        lo, hi = score.meter.bpm_range
        assert lo <= bpm <= hi
    # Rock in 4/4: kick on 1 and 3, snare on 2 and 4, whatever the hats do.
    for score, _ in scores:
        if score.meter.name == "4/4" and "drums_rock" in score.tags:
            drums = [n for n in score.notes if n.channel == scoregen.DRUM_CHANNEL]
            snares = {n.beat % 4 for n in drums if n.pitch == scoregen.SNARE}
            assert snares <= {1.0, 3.0}, snares


def test_slow_band_songs_get_busier_hats():
    def sixteenths(lo, hi):
        rng = np.random.default_rng(5)
        return np.mean([scoregen.band_hat_every(rng, bpm) == 0
                        for bpm in rng.uniform(lo, hi, 2000)])

    assert sixteenths(60, 90) > 0.35 > 0.10 > sixteenths(135, 170)


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'disco'"):
        scoregen.compose(np.random.default_rng(0), 20.0, "disco")


def test_chorales_change_chord_on_every_beat():
    meter = scoregen.METERS[0]  # 4/4
    bars = scoregen.progression(np.random.default_rng(0), 8, meter, per_beat=True)
    assert all(len(chords) == 4 for chords in bars)
    assert scoregen.chord_at([1, 2, 3, 4], 2.5, 4) == 3


@pytest.mark.parametrize("seed", range(8))
def test_tempo_map_is_increasing_and_follows_its_curve(seed):
    rng = np.random.default_rng(seed)
    tempo, kind, info = scoregen.tempo_map(rng, 120.0, -1, 80, 0.4)
    times = tempo.times
    assert times[0] == pytest.approx(0.4)
    periods = np.diff(times)
    assert np.all(periods > 0)
    assert tempo.seconds(-1) == pytest.approx(0.4)
    assert tempo.seconds(0.5) == pytest.approx((times[1] + times[2]) / 2)
    if kind == "steady":
        np.testing.assert_allclose(periods, 0.5)
    elif kind == "change":
        before, after = periods[5], periods[-5]
        assert before / after == pytest.approx(info["tempo_ratio"], rel=2e-3)  # stored rounded


def test_targets_mark_the_beat_frame_and_its_neighbours():
    y = dataset.targets(np.array([0.10, 0.503, 9.99]), 100, 100.0)
    assert y[10] == 1.0 and y[9] == y[11] == 0.5
    assert y[50] == 1.0 and y[49] == y[51] == 0.5
    assert y.sum() == pytest.approx(2 * 2.0)  # 9.99 s is past the last frame


def test_position_labels_follow_the_beat_model_classes():
    """Frames are labelled beat / half / thirds / none by their phase between annotated
    beats, with the beat model's windows; frames outside the annotations are ignored."""
    from gridcast.host.training import train_position_net as tp

    frame_hz, latency = 100.0, 0.0
    beats = np.array([1.0, 1.6, 2.2])  # period 60 frames: window max(1/32, 0.5/60) * 60
    y = tp.positions(beats, 300, latency, frame_hz, ternary=False)
    t = (np.arange(300) + 1) / frame_hz  # frame k shows time (k + 1) / frame_hz

    def at(sec):
        return y[int(np.argmin(np.abs(t - sec)))]

    assert at(0.5) == tp.IGNORE and at(2.5) == tp.IGNORE
    assert at(1.0) == tp.BEAT and at(1.6) == tp.BEAT and at(1.3) == tp.HALF
    assert at(1.2) == tp.NONE and at(1.4) == tp.NONE
    y3 = tp.positions(beats, 300, latency, frame_hz, ternary=True)
    assert y3[int(np.argmin(np.abs(t - 1.2)))] == tp.THIRD_1
    assert y3[int(np.argmin(np.abs(t - 1.4)))] == tp.THIRD_2
    assert y3[int(np.argmin(np.abs(t - 1.3)))] == tp.NONE
    # about 1.875 frames either side of a beat at this period: 3 or 4 beat frames per beat
    assert 3 <= np.sum(y[:160] == tp.BEAT) <= 8


def test_compound_meters_and_swing_count_as_ternary():
    from gridcast.host.training import train_position_net as tp

    assert tp.is_ternary("6/8") and tp.is_ternary("12/8") and tp.is_ternary("4/4 swing")
    assert not tp.is_ternary("4/4") and not tp.is_ternary("3/4") and not tp.is_ternary("2/2")


def test_history_rows_hold_this_frame_then_the_ones_before():
    from gridcast.host.training import train_position_net as tp

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    h = tp.stack_history(x, 2)
    assert h.shape == (4, 6)
    np.testing.assert_array_equal(h[2], [6, 7, 8, 3, 4, 5])
    np.testing.assert_array_equal(h[0], [0, 1, 2, 0, 0, 0])


def test_fine_tuning_starts_only_from_a_beat_network(tmp_path):
    from gridcast.host.analysis import beat_network
    from gridcast.host.training import train

    with train.open_network(beat_network.MODEL_PATHS[0]) as z:
        assert int(z["n_blocks"]) == len(train.DILATIONS)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: not a beat network \(no w_in"):
        train.open_network(str(other))
    with pytest.raises(ValueError, match=r"missing\.npz: not readable as a network"):
        train.open_network(str(tmp_path / "missing.npz"))
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match=r"text\.npz: not readable as a network"):
        train.open_network(str(text))

"""Downbeat inference: bar phase from harmonic change, and the whole path on rendered audio."""

import numpy as np
import pytest

from gridcast.host.analysis import downbeats, features
from gridcast.host.evaluation import demo_audio

PITCH = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9}


def beat_chroma(chords: list[int], melody: list[int]) -> np.ndarray:
    """Mean-removed unit chroma per beat: a major triad on each root plus a melody note."""
    rows = []
    for root, note in zip(chords, melody, strict=True):
        row = np.zeros(12)
        row[[(root + k) % 12 for k in (0, 4, 7)]] = 1.0
        row[note % 12] += 1.0
        rows.append(row - row.mean())
    out = np.array(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def bar_line_margin(change: np.ndarray, beats_per_bar: int) -> float:
    pos = np.arange(len(change)) % beats_per_bar
    return float(change[pos == 0][1:].mean() - change[pos != 0].mean())


@pytest.mark.parametrize("span", [1, 2])
def test_chord_changes_peak_at_the_bar_lines(span):
    # One chord per 4/4 bar (I-V-vi-IV in C), a melody note on every beat.
    rng = np.random.default_rng(3)
    chords = [r for r in [0, 7, 9, 5] * 6 for _ in range(4)]
    chroma = beat_chroma(chords, list(rng.integers(0, 12, len(chords))))
    assert bar_line_margin(downbeats.harmonic_change(chroma, span), 4) > 1.5


def test_no_change_gives_a_flat_curve_not_nan():
    chroma = beat_chroma([0] * 8, [4] * 8)
    change = downbeats.harmonic_change(chroma, 2)
    assert np.all(np.isfinite(change))
    assert np.allclose(change, 0.0, atol=1e-6)


def test_rendered_waltz_gets_its_meter_and_bar_phase():
    signal, beats, bib = demo_audio.render(seconds=24.0, bpm=104.0, beats_per_bar=3)
    feats = features.extract_array(signal, demo_audio.SAMPLE_RATE)
    np.testing.assert_array_equal(downbeats.beat_in_bar(feats, beats), bib)


def test_rendered_4_4_song_gets_its_bar_phase_given_the_meter():
    # Kick on 1 and 3 makes beat 3 look like a downbeat; the chord change on 1 decides.
    signal, beats, bib = demo_audio.render(seconds=24.0, bpm=104.0, beats_per_bar=4)
    feats = features.extract_array(signal, demo_audio.SAMPLE_RATE)
    np.testing.assert_array_equal(downbeats.beat_in_bar(feats, beats, meter=4), bib)


def downbeat_activation(bib: np.ndarray, rate: float, times: np.ndarray, n: int,
                        rng: np.random.Generator, high: float = 0.7) -> np.ndarray:
    """A noisy network output: `high` at true downbeats, low elsewhere."""
    act = rng.uniform(0.0, 0.15, n)
    for t, b in zip(times, bib, strict=True):
        act[round(t * rate)] = high if b == 1 else rng.uniform(0.05, 0.3)
    return act


@pytest.mark.parametrize("meter", [2, 3, 4])
def test_bar_positions_follow_the_downbeat_activation(meter):
    rng = np.random.default_rng(meter)
    times = np.arange(0.5, 30, 0.5)
    bib = (np.arange(len(times)) + 1) % meter + 1  # starts on beat 2: a pickup
    act = downbeat_activation(bib, 100.0, times, 3100, rng)
    np.testing.assert_array_equal(
        downbeats.beat_in_bar_from_activation(times, act, 100.0), bib)


def test_a_meter_change_is_followed_at_the_bar_line():
    rng = np.random.default_rng(0)
    times = np.arange(0.5, 40, 0.5)
    bib = np.r_[np.arange(40) % 4 + 1, np.arange(len(times) - 40) % 3 + 1]
    act = downbeat_activation(bib, 100.0, times, 4100, rng)
    np.testing.assert_array_equal(
        downbeats.beat_in_bar_from_activation(times, act, 100.0), bib)


def test_one_missed_downbeat_does_not_shift_the_bars():
    rng = np.random.default_rng(1)
    times = np.arange(0.5, 30, 0.5)
    bib = np.arange(len(times)) % 4 + 1
    act = downbeat_activation(bib, 100.0, times, 3100, rng)
    act[round(times[20] * 100)] = 0.05  # bar 6's downbeat has no evidence
    np.testing.assert_array_equal(
        downbeats.beat_in_bar_from_activation(times, act, 100.0), bib)


def test_bar_length_is_the_usual_gap_between_downbeats():
    from gridcast.host.evaluation import evaluate

    pickup_then_4_4 = np.r_[3, 4, np.arange(16) % 4 + 1]
    assert evaluate.bar_length(pickup_then_4_4) == 4
    assert evaluate.bar_length(np.array([2, 3, 1, 2])) == 0  # one downbeat: no bar seen


def test_the_bar_stage_is_scored_on_the_annotated_beats(tmp_path):
    # A waltz: given its beats, the bar stage finds 3/4 and every downbeat; the same
    # annotation shifted by one beat scores 0, so the figure measures the bar stage.
    import soundfile as sf

    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.evaluation import evaluate

    signal, beats, bib = demo_audio.render(seconds=20.0, bpm=104.0, beats_per_bar=3)
    path = str(tmp_path / "waltz.wav")
    sf.write(path, signal, demo_audio.SAMPLE_RATE)
    right = evaluate.bars_given_beats(evaluate.Clip("waltz", path, beats, bib), AnalyzerParams())
    assert right == {"downbeat_f_given_beats": 1.0, "meter_given_beats": 3, "ref_meter": 3}
    shifted = evaluate.Clip("waltz", path, beats, np.roll(bib, 1))
    assert evaluate.bars_given_beats(shifted, AnalyzerParams())["downbeat_f_given_beats"] == 0.0
    assert evaluate.bars_given_beats(evaluate.Clip("waltz", path, beats, None),
                                     AnalyzerParams()) == {}


def test_the_bar_stage_reads_annotated_beats_where_the_analyzer_puts_beats(tmp_path,
                                                                             monkeypatch):
    # People mark real recordings later in the attack than the onset the analyzer puts
    # its beats on; the bar stage reads the network within 20 ms of each beat, so marks
    # 25 ms late go in on their onsets, and are scored as marked.
    import soundfile as sf

    from gridcast.host.analysis import analyzer, downbeats
    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.evaluation import evaluate

    signal, beats, bib = demo_audio.render(seconds=20.0, bpm=104.0, beats_per_bar=3)
    path = str(tmp_path / "waltz.wav")
    sf.write(path, signal, demo_audio.SAMPLE_RATE)
    seen = []
    bar_stage = downbeats.beat_in_bar_from_activation

    def spy(times_s, *args, **kwargs):
        seen.append(np.asarray(times_s))
        return bar_stage(times_s, *args, **kwargs)

    monkeypatch.setattr(downbeats, "beat_in_bar_from_activation", spy)
    late = beats + 0.025
    row = evaluate.bars_given_beats(evaluate.Clip("waltz", path, late, bib), AnalyzerParams())
    own = analyzer.analyze_file(path, AnalyzerParams()).beats  # where the analyzer puts them
    nearest = own[np.argmin(np.abs(own[None, :] - seen[0][:, None]), axis=1)]
    assert np.median(np.abs(seen[0] - nearest)) < 0.002  # not 25 ms later, on the marks
    assert row == {"downbeat_f_given_beats": 1.0, "meter_given_beats": 3, "ref_meter": 3}


def test_extra_evidence_at_the_bar_lines_sets_the_phase():
    # A flat activation says nothing; log-odds for a downbeat on every fourth beat
    # (from beat 3 on) decide the meter and the phase.
    times = np.arange(0.5, 20, 0.5)
    flat = np.full(2100, 0.2)
    bib = (np.arange(len(times)) + 2) % 4 + 1
    odds = np.where(bib == 1, 3.0, -1.0)
    np.testing.assert_array_equal(
        downbeats.beat_in_bar_from_activation(times, flat, 100.0, extra_log_odds=odds), bib)


def test_the_accent_expert_fit_finds_a_planted_rule():
    from gridcast.host.training import downbeat_experts

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = (x[:, 1] + 0.3 * rng.normal(size=4000) > 0.5).astype(float)
    beta = downbeat_experts.fit_logistic(x, y, l2=1.0)
    assert beta[1] > 3 * max(abs(beta[0]), abs(beta[2]))
    assert beta[3] < 0  # a downbeat is the rarer class


def test_accent_features_have_one_row_per_beat():
    from gridcast.host.training import downbeat_experts

    signal, beats, _ = demo_audio.render(seconds=12.0, bpm=110.0, beats_per_bar=4)
    feats = features.extract_array(signal, demo_audio.SAMPLE_RATE)
    act = np.full((feats.n_frames, 2), 0.3, dtype=np.float32)
    x = downbeat_experts.beat_features(feats, act, beats)
    assert x.shape == (len(beats), 11 * (1 + len(downbeat_experts.CONTEXT)))
    assert np.all(np.isfinite(x))

"""A picture of a beat map: waveform, beats and downbeats, sections and phrases, band
envelopes, tempo."""

from __future__ import annotations

import os

import numpy as np

from gridcast.host.analysis import audio
from gridcast.host.beatmaps.beatmap import BeatMap

BAND_COLOURS = {"bass": "#c0392b", "mid": "#27ae60", "high": "#2980b9"}
ROLE_COLOURS = {"intro": "#95a5a6", "verse": "#a3c4dc", "buildup": "#f5b041", "drop": "#e74c3c",
                "chorus": "#e67e22", "break": "#5dade2", "bridge": "#af7ac5", "outro": "#7f8c8d",
                "other": "#d5d8dc"}


def _waveform_peaks(path: str, rate_hz: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    """Peak amplitude per 1/rate_hz seconds, read block-wise (no whole file in memory)."""
    info = audio.probe(path)
    hop = max(1, int(info.sample_rate / rate_hz))
    peaks, carry = [], np.zeros(0, dtype=np.float32)
    for block in audio.iter_mono_blocks(info):
        data = np.concatenate([carry, block])
        n = len(data) // hop * hop
        peaks.append(np.abs(data[:n]).reshape(-1, hop).max(axis=1))
        carry = data[n:]
    values = np.concatenate(peaks) if peaks else np.zeros(0)
    return np.arange(len(values)) * hop / info.sample_rate, values


def _structure(ax, bm: BeatMap, start_s: float, end_s: float) -> None:
    """Sections as shaded spans with their role (and energy) on top, phrase starts as
    dashed lines."""
    for sec in bm.sections:
        if sec.end_s < start_s or sec.start_s > end_s:
            continue
        ax.axvspan(sec.start_s, sec.end_s, color=ROLE_COLOURS.get(sec.role, "#d5d8dc"),
                   alpha=0.25, lw=0)
        ax.text(max(sec.start_s, start_s), 1.0, f" {sec.role} {sec.energy:.1f}",
                transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=8)
    for t in bm.phrases:
        if start_s <= t <= end_s:
            ax.axvline(t, color="#8e44ad", lw=1.2, ls="--", alpha=0.9)


def render(bm: BeatMap, out_png: str, audio_path: str | None = None,
           start_s: float = 0.0, end_s: float | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end_s = end_s if end_s is not None else max(bm.duration_s, float(bm.beats[-1]) if len(
        bm.beats) else 0.0, 1.0)
    fig, (ax_w, ax_e, ax_t) = plt.subplots(3, 1, figsize=(14, 7), sharex=True,
                                           gridspec_kw={"height_ratios": [2, 2, 1]})
    title = bm.metadata.get("audio_file", "beat map")
    fig.suptitle(f"{title} — {bm.tempo_bpm:.1f} BPM, {bm.meter or '?'} beats/bar, "
                 f"{len(bm.beats)} beats (map v{bm.version})")
    if audio_path and os.path.exists(audio_path):
        t, peaks = _waveform_peaks(audio_path)
        ax_w.fill_between(t, -peaks, peaks, color="0.6", lw=0)
        ax_w.set_ylabel("waveform")
    else:
        ax_w.plot(np.arange(len(bm.envelopes["bass"])) / bm.envelope_rate_hz,
                  bm.envelopes["bass"], color="0.6")
        ax_w.set_ylabel("bass envelope")
    for t_beat, pos, strength in zip(bm.beats, bm.beat_in_bar, bm.beat_strength, strict=True):
        if start_s <= t_beat <= end_s:
            down = pos == 1
            ax_w.axvline(t_beat, color="#e67e22" if down else "#34495e",
                         lw=2.0 if down else 0.5 + strength, alpha=0.9 if down else 0.6)
    _structure(ax_w, bm, start_s, end_s)
    env_t = np.arange(len(bm.envelopes["bass"])) / bm.envelope_rate_hz
    for i, (band, colour) in enumerate(BAND_COLOURS.items()):
        ax_e.fill_between(env_t, i, i + 0.9 * bm.envelopes[band], color=colour, lw=0,
                          label=band)
    ax_e.set_yticks([0.45, 1.45, 2.45], list(BAND_COLOURS))
    ax_e.set_ylabel("envelopes")
    if len(bm.tempo_curve_times):
        ax_t.plot(bm.tempo_curve_times, bm.tempo_curve_bpm, color="k", lw=1)
    ax_t.set_ylabel("tempo (BPM)")
    ax_t.set_xlabel("time (s)")
    ax_t.set_xlim(start_s, end_s)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(out_png))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png

"""Composed dance tracks with known phrases and sections: the structure analysis's test material.

A track is a list of sections (intro, build-up, drop, break, outro) in one of a
few orders, each made of phrases of 4, 8 or 16 bars. Every phrase start changes
the arrangement audibly (a layer enters or leaves, the chords move), as
producers do, and nothing changes inside a phrase except what a build-up does
(a roll that gets denser, a riser that gets louder). Instruments are drawn per
track (kick pitch and decay, bass and lead waveforms and filters, pad detune,
drum pattern), as are the key, the chord progressions, the tempo (90-140 BPM)
and a little of what a recording does (reverb, a low-pass, noise).

Synthesised with numpy (no soundfont needed), 22.05 kHz mono; a three-minute
track takes about a second. ``compose(seed)`` is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.signal

SAMPLE_RATE = 22_050
BEATS_PER_BAR = 4
BPM_RANGE = (90.0, 140.0)
# Section orders (role, bars); bars of None are drawn per track.
TEMPLATES = (
    ("intro", "buildup", "drop", "break", "buildup", "drop", "outro"),
    ("intro", "drop", "break", "buildup", "drop", "outro"),
    ("intro", "buildup", "drop", "break", "drop", "outro"),
    ("intro", "break", "buildup", "drop", "break", "buildup", "drop", "outro"),
)
SECTION_BARS = {"intro": (8, 16), "buildup": (4, 8, 8), "drop": (16, 16, 8, 32),
                "break": (8, 16), "outro": (8, 16)}
# How a section of n bars splits into phrases (each split equally likely).
SPLITS = {4: ((4,),), 8: ((8,), (8,), (4, 4)), 16: ((8, 8), (8, 8), (16,), (4, 4, 8)),
          32: ((8, 8, 8, 8), (16, 16), (8, 8, 16))}
PROGRESSIONS = ((0, 8, 3, 10), (0, 5, 8, 7), (0, 10, 8, 7), (0, 3, 8, 10), (0, 8, 10, 5),
                (0, 0, 8, 10))  # chord roots in semitones from the key (minor chords)
# Layers each role draws from: first phrase's set, then what later phrases may add or drop.
ROLE_LAYERS = {
    "intro": ((("kick", "hat"), ("kick", "hat", "perc"), ("pad",), ("kick",), ("hat", "pad")),
              ("bass", "clap", "hat", "pad", "perc", "openhat")),
    "buildup": ((("roll", "riser", "pad"), ("roll", "riser", "arp"), ("roll", "kick", "arp")),
                ()),
    "drop": ((("kick", "clap", "hat", "bass", "lead"), ("kick", "clap", "openhat", "bass", "arp"),
              ("kick", "clap", "hat", "bass", "pad")),
             ("lead", "arp", "openhat", "perc", "pad")),
    "break": ((("pad",), ("pad", "arp"), ("pad", "lead"), ("arp",)),
              ("hat", "arp", "lead", "pad")),
    "outro": ((("kick", "hat", "bass"), ("kick", "hat", "clap"), ("kick", "hat", "pad")),
              ("bass", "clap", "pad", "openhat")),
}
# Layer gains: a drop is loud because many layers play, a break quiet because few do.
GAIN = {"kick": 0.9, "clap": 0.35, "hat": 0.12, "openhat": 0.12, "perc": 0.18, "bass": 0.4,
        "lead": 0.16, "arp": 0.13, "pad": 0.1, "roll": 0.3, "riser": 0.12}


@dataclass(frozen=True)
class Phrase:
    role: str
    bars: int
    layers: tuple[str, ...]
    progression: int  # index into PROGRESSIONS


@dataclass
class Track:
    """A rendered track and its truth (seconds)."""

    seed: int
    audio: np.ndarray  # mono float32 at SAMPLE_RATE
    bpm: float
    beats_s: np.ndarray
    beat_in_bar: np.ndarray
    phrases_s: np.ndarray  # every phrase start, the first included
    sections: list[tuple[float, float, str]]  # (start_s, end_s, role)
    manifest: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def plan(rng: np.random.Generator) -> list[Phrase]:
    """The arrangement: phrases with their role, length, layers and chords."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    drop_prog, break_prog = rng.choice(len(PROGRESSIONS), 2)
    phrases: list[Phrase] = []
    for role in template:
        bars = int(rng.choice(SECTION_BARS[role]))
        split = SPLITS[bars][int(rng.integers(len(SPLITS[bars])))]
        starts, extras = ROLE_LAYERS[role]
        layers = set(starts[int(rng.integers(len(starts)))])
        prog = int(break_prog if role in ("break", "intro") else drop_prog)
        for k, n in enumerate(split):
            if k:  # a new phrase inside the section: the arrangement changes audibly
                layers = _vary(rng, layers, extras)
                if rng.random() < 0.5:
                    prog = (prog + 1) % len(PROGRESSIONS)
            phrases.append(Phrase(role, n, tuple(sorted(layers)), prog))
    return phrases


def _vary(rng: np.random.Generator, layers: set[str], extras: tuple[str, ...]) -> set[str]:
    out = set(layers)
    absent = [x for x in extras if x not in out]
    if absent and (len(out) < 3 or rng.random() < 0.7):
        out.add(str(rng.choice(absent)))
        if len(out) > 5 and rng.random() < 0.5:
            out.discard(str(rng.choice(sorted(out - {"kick"}))))
    elif len(out) > 1:
        out.discard(str(rng.choice(sorted(out))))
    return out


@dataclass
class _Kit:
    """Sounds drawn once per track."""

    kick: np.ndarray
    clap: np.ndarray
    hat: np.ndarray
    openhat: np.ndarray
    perc: np.ndarray
    bass_wave: str
    bass_cut_hz: float
    lead_wave: str
    pad_detune: float
    four_on_floor: bool
    sixteenth_hats: bool
    key_hz: float


def _decay(n: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * SAMPLE_RATE))


def _kit(rng: np.random.Generator) -> _Kit:
    t = np.arange(int(0.35 * SAMPLE_RATE)) / SAMPLE_RATE
    base, sweep = rng.uniform(42, 62), rng.uniform(60, 140)
    phase = 2 * np.pi * np.cumsum(base + sweep * np.exp(-t * rng.uniform(20, 45))) / SAMPLE_RATE
    kick = np.sin(phase) * _decay(len(t), rng.uniform(0.08, 0.2))
    noise = rng.standard_normal(int(0.3 * SAMPLE_RATE))
    bp = scipy.signal.butter(2, [rng.uniform(800, 1500), rng.uniform(3000, 6000)], "bandpass",
                             fs=SAMPLE_RATE, output="sos")
    clap = scipy.signal.sosfilt(bp, noise)[:int(0.2 * SAMPLE_RATE)]
    clap *= _decay(len(clap), rng.uniform(0.03, 0.08))
    hp = scipy.signal.butter(2, rng.uniform(6000, 9000), "highpass", fs=SAMPLE_RATE, output="sos")
    hiss = scipy.signal.sosfilt(hp, noise)
    hat = hiss[:int(0.06 * SAMPLE_RATE)] * _decay(int(0.06 * SAMPLE_RATE), rng.uniform(0.01, 0.025))
    openhat = hiss[:int(0.25 * SAMPLE_RATE)] * _decay(int(0.25 * SAMPLE_RATE), 0.08)
    tp = np.arange(int(0.12 * SAMPLE_RATE)) / SAMPLE_RATE
    perc = np.sin(2 * np.pi * rng.uniform(300, 900) * tp) * _decay(len(tp), 0.03)
    return _Kit(kick, clap, hat, openhat, perc, str(rng.choice(["saw", "square", "sine"])),
                float(rng.uniform(250, 900)), str(rng.choice(["saw", "square", "tri"])),
                float(rng.uniform(0.003, 0.012)), bool(rng.random() < 0.75),
                bool(rng.random() < 0.4), float(55 * 2 ** (rng.integers(12) / 12)))


def _wave(kind: str, hz: float, n: int) -> np.ndarray:
    phase = (hz * np.arange(n) / SAMPLE_RATE) % 1.0
    if kind == "saw":
        return 2 * phase - 1
    if kind == "square":
        return np.where(phase < 0.5, 1.0, -1.0)
    if kind == "tri":
        return 4 * np.abs(phase - 0.5) - 1
    return np.sin(2 * np.pi * phase)


class _Mixer:
    def __init__(self, n: int) -> None:
        self.layers: dict[str, np.ndarray] = {}
        self.n = n

    def add(self, layer: str, at_s: float, sound: np.ndarray, gain: float = 1.0) -> None:
        buf = self.layers.setdefault(layer, np.zeros(self.n))
        i = round(at_s * SAMPLE_RATE)
        if 0 <= i < self.n:
            m = min(len(sound), self.n - i)
            buf[i:i + m] += gain * sound[:m]


def _bar(mix: _Mixer, kit: _Kit, ph: Phrase, bar: int, t0: float, beat: float,
         rng: np.random.Generator, progress: float) -> None:
    """One bar of phrase ``ph`` from ``t0`` (``progress``: 0..1 through the phrase)."""
    root = PROGRESSIONS[ph.progression][bar % 4]
    chord = [kit.key_hz * 2 ** ((root + s) / 12) for s in (0, 3, 7)]
    layers = ph.layers
    for b in range(BEATS_PER_BAR):
        t = t0 + b * beat
        if "kick" in layers and (kit.four_on_floor or b in (0, 2) or (b == 1 and bar % 2)):
            mix.add("kick", t, kit.kick)
        if not kit.four_on_floor and "kick" in layers and b == 2:
            mix.add("kick", t + beat / 2, kit.kick, 0.7)
        if "clap" in layers and b in (1, 3):
            mix.add("clap", t, kit.clap)
        if "hat" in layers:
            for k in (range(4) if kit.sixteenth_hats else (2,)):
                mix.add("hat", t + k * beat / 4, kit.hat, 1.0 if k == 2 else 0.5)
        if "openhat" in layers:
            mix.add("openhat", t + beat / 2, kit.openhat)
        if "perc" in layers and (b + bar) % 3 == 0:
            mix.add("perc", t + 3 * beat / 4, kit.perc)
        if "bass" in layers:
            n = int(beat / 2 * 0.9 * SAMPLE_RATE)
            note = _wave(kit.bass_wave, chord[0] / 2, n) * _decay(n, 0.15)
            mix.add("bass", t + beat / 2, note)
            if not kit.four_on_floor:
                mix.add("bass", t, note, 0.8)
        if "arp" in layers:
            n = int(beat / 4 * 0.8 * SAMPLE_RATE)
            for k in range(4):
                hz = chord[(b * 4 + k) % 3] * 4
                mix.add("arp", t + k * beat / 4, _wave("square", hz, n) * _decay(n, 0.05))
        if "roll" in layers:
            # A snare roll that doubles its rate through the build-up: quarters, eighths,
            # sixteenths, louder as it goes.
            per_beat = 1 if progress < 0.5 else 2 if progress < 0.75 else 4
            for k in range(per_beat):
                mix.add("roll", t + k * beat / per_beat, kit.clap, 0.3 + 0.7 * progress)
    if "lead" in layers:
        n = int(beat * 0.95 * SAMPLE_RATE)
        for b, idx in enumerate(rng.permutation(3)[[0, 1, 2, 0]]):
            hz = chord[int(idx)] * 2
            mix.add("lead", t0 + b * beat, _wave(kit.lead_wave, hz, n) * _decay(n, 0.4))
    if "pad" in layers:
        n = int(BEATS_PER_BAR * beat * SAMPLE_RATE)
        attack = np.minimum(1.0, np.arange(n) / (0.3 * SAMPLE_RATE))
        pad = sum(_wave("saw", hz * 2 * (1 + d), n) for hz in chord
                  for d in (-kit.pad_detune, kit.pad_detune))
        mix.add("pad", t0, pad * attack * np.minimum(1.0, (n - np.arange(n)) / 2000) / 6)
    if "riser" in layers:
        n = int(BEATS_PER_BAR * beat * SAMPLE_RATE)
        mix.add("riser", t0, rng.standard_normal(n) * (0.2 + 0.8 * progress) ** 2)


def _finish(mix: _Mixer, kit: _Kit, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    out = np.zeros(mix.n)
    sos_bass = scipy.signal.butter(2, kit.bass_cut_hz, "lowpass", fs=SAMPLE_RATE, output="sos")
    sos_riser = scipy.signal.butter(2, 2500, "highpass", fs=SAMPLE_RATE, output="sos")
    for layer, buf in mix.layers.items():
        if layer == "bass":
            buf = scipy.signal.sosfilt(sos_bass, buf)
        elif layer == "riser":
            buf = scipy.signal.sosfilt(sos_riser, buf)
        out += GAIN[layer] * buf
    fx: dict = {}
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.3, 1.2)
        ir = rng.standard_normal(int(rt60 * SAMPLE_RATE)) * _decay(int(rt60 * SAMPLE_RATE),
                                                                   rt60 / 6.9)
        ir[0] = 8.0
        out = scipy.signal.fftconvolve(out, ir / np.abs(ir).sum() * 4)[:mix.n]
        fx["reverb_rt60"] = round(float(rt60), 2)
    if rng.random() < 0.3:
        lp = rng.uniform(4000, 9000)
        out = scipy.signal.sosfilt(scipy.signal.butter(4, lp, "lowpass", fs=SAMPLE_RATE,
                                                       output="sos"), out)
        fx["lp"] = int(lp)
    if rng.random() < 0.3:
        snr = rng.uniform(30, 50)
        out += rng.standard_normal(mix.n) * np.sqrt(np.mean(out ** 2)) / 10 ** (snr / 20)
        fx["noise_db"] = round(float(snr))
    out = out / (np.abs(out).max() + 1e-9) * 10 ** (rng.uniform(-12, -1) / 20)
    return out.astype(np.float32), fx


def compose(seed: int) -> Track:
    """Track number ``seed``: plan, render and truth."""
    rng = np.random.default_rng([0x5EC7, seed])
    phrases = plan(rng)
    bpm = float(rng.uniform(*BPM_RANGE))
    beat = 60.0 / bpm
    lead_in = float(rng.uniform(0.0, 1.5))
    n_bars = sum(p.bars for p in phrases)
    tail_s = 1.5
    mix = _Mixer(int((lead_in + n_bars * BEATS_PER_BAR * beat + tail_s) * SAMPLE_RATE))
    kit = _kit(rng)
    bar_s = BEATS_PER_BAR * beat
    starts: list[float] = []
    sections: list[tuple[float, float, str]] = []
    bar = 0
    for k, ph in enumerate(phrases):
        t_start = lead_in + bar * bar_s
        starts.append(t_start)
        if k == 0 or phrases[k - 1].role != ph.role:
            sections.append((t_start, 0.0, ph.role))
        for j in range(ph.bars):
            _bar(mix, kit, ph, j, t_start + j * bar_s, beat, rng, j / max(1, ph.bars - 1))
        if ph.role == "drop" and (k == 0 or phrases[k - 1].role != "drop"):
            mix.add("openhat", t_start, kit.openhat, 3.0)  # a crash on the drop
        bar += ph.bars
    end_s = lead_in + bar * bar_s
    ends = [s[0] for s in sections[1:]] + [end_s]
    sections = [(a, b, role) for (a, _, role), b in zip(sections, ends, strict=True)]
    audio, fx = _finish(mix, kit, rng)
    beats = lead_in + np.arange(bar * BEATS_PER_BAR) * beat
    manifest = {"bpm": round(bpm, 2), "bars": bar, "roles": [p.role for p in phrases],
                "phrase_bars": [p.bars for p in phrases], "fx": fx,
                "four_on_floor": kit.four_on_floor}
    return Track(seed, audio, bpm, beats, np.arange(len(beats)) % BEATS_PER_BAR + 1,
                 np.array(starts), sections, manifest)

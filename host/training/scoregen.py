"""Random scores with exact beats: the training material of the beat model.

No piece of the evaluation sets is used to train gridcast: they are rendered
from real scores (music21's corpus, game MIDI files) whose split into
development and held-out works we do not know. Instead this module composes
music of its own, with the structure a listener uses to find the beat and the
bar, and none of it hard-wired to one cue:

- a meter (x/4, 2/2, compound 6/8, 9/8, 12/8, swung 4/4) and its beat unit,
  the one annotators count (a quarter in x/4, a half in 2/2, a dotted quarter
  in compound meters);
- harmony that changes mostly at bar lines, cadences at phrase ends;
- a melody from rhythm motifs that repeat bar by bar, with pickups;
- bass and accompaniment patterns, some of which put their onsets off the
  beat (ska chords, syncopated bass), and drums in one of many styles, or none;
- accents, timing jitter and a tempo curve (steady, drift, rubato, abrupt
  change).

The ``band`` profile composes what most recorded pop, rock, hip-hop and reggae is:
a band with drums in 4/4 (a few 12/8, 3/4 and swung), a backbeat or a one-drop,
hi-hats on sixteenths, eighths or quarters, from 58 to 175 BPM. Slow songs with
busy hats are where the beat is counted at the backbeat's level, not the hats'
(the annotators of recorded music do so), and the general profile has few of them.

A score is a list of notes in *beats*; ``TempoMap`` turns beats into seconds,
so the annotations are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Meter:
    name: str
    beats_per_bar: int
    pulses_per_beat: int  # 2: simple meter, 3: compound (or swung) beat
    bpm_range: tuple[float, float]  # of the annotated beat
    weight: float  # how often it is drawn
    swing: bool = False


METERS = (
    Meter("4/4", 4, 2, (70, 180), 0.36),
    Meter("3/4", 3, 2, (70, 190), 0.14),
    Meter("2/4", 2, 2, (60, 150), 0.08),
    Meter("2/2", 2, 2, (55, 125), 0.07),
    Meter("6/8", 2, 3, (45, 110), 0.14),
    Meter("9/8", 3, 3, (45, 100), 0.04),
    Meter("12/8", 4, 3, (45, 95), 0.07),
    Meter("4/4 swing", 4, 3, (85, 210), 0.10, swing=True),
)

# General MIDI programs by role (0-based).
MELODY_PROGRAMS = (0, 1, 4, 6, 11, 19, 21, 22, 24, 25, 40, 41, 56, 60, 65, 66, 68, 71, 73, 74, 78,
                   79, 80, 81, 105, 109, 110)
CHORD_PROGRAMS = (0, 2, 4, 5, 16, 18, 19, 24, 25, 26, 27, 29, 46, 48, 49, 50, 61, 88, 89, 90)
BASS_PROGRAMS = (32, 33, 34, 35, 36, 38, 39, 42, 43, 58, 70)
DRUM_CHANNEL = 9
KICK, SNARE, CLAP, HAT, OPEN_HAT, RIDE, CRASH, TOM, RIM = 36, 38, 39, 42, 46, 51, 49, 45, 37


@dataclass
class Note:
    beat: float  # onset in beats from the first downbeat (may be negative: a pickup)
    length: float  # in beats
    pitch: int
    velocity: int
    channel: int


@dataclass
class Score:
    meter: Meter
    n_bars: int
    notes: list[Note] = field(default_factory=list)
    programs: dict[int, int] = field(default_factory=dict)  # channel -> GM program
    tags: list[str] = field(default_factory=list)
    pickup_beats: int = 0


class TempoMap:
    """Seconds of every beat; fractions of a beat are linear within it."""

    def __init__(self, beat_times_s: np.ndarray, first_beat: int):
        self.times = beat_times_s  # time of beat index first_beat + k
        self.first = first_beat

    def seconds(self, beat: float) -> float:
        k = beat - self.first
        i = int(np.clip(np.floor(k), 0, len(self.times) - 2))
        return float(self.times[i] + (k - i) * (self.times[i + 1] - self.times[i]))


def tempo_map(rng: np.random.Generator, bpm: float, first_beat: int, n_beats: int,
              start_s: float) -> tuple[TempoMap, str, dict]:
    """Beat times for n_beats beats under a random tempo curve."""
    kind = rng.choice(["steady", "drift", "rubato", "change"], p=[0.4, 0.2, 0.25, 0.15])
    x = np.linspace(0.0, 1.0, n_beats)
    info: dict = {}
    if kind == "steady":
        factor = np.ones(n_beats)
    elif kind == "drift":
        amount = rng.uniform(-0.2, 0.2)
        factor = 1.0 + amount * x
        info["drift"] = round(float(amount), 3)
    elif kind == "rubato":
        depth = rng.uniform(0.03, 0.1)
        # smooth noise: a few random sinusoids with periods of 2 to 8 bars
        factor = np.ones(n_beats)
        for _ in range(3):
            period = rng.uniform(6, 30)
            factor += depth / 2 * np.sin(2 * np.pi * (np.arange(n_beats) / period + rng.uniform()))
        info["rubato_depth"] = round(float(depth), 3)
    else:
        at = rng.uniform(0.3, 0.7)
        ratio = rng.choice([rng.uniform(0.75, 0.9), rng.uniform(1.1, 1.3)])
        factor = np.where(x < at, 1.0, ratio)
        info.update(change_at=round(float(at), 3), tempo_ratio=round(float(ratio), 3))
    periods = 60.0 / (bpm * factor)
    times = start_s + np.concatenate([[0.0], np.cumsum(periods[:-1])])
    return TempoMap(times, first_beat), str(kind), info


# ---------------------------------------------------------------- harmony

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


def progression(rng: np.random.Generator, n_bars: int, meter: Meter,
                per_beat: bool = False) -> list[list[int]]:
    """Scale degrees (0-6) per bar: one chord, two (split at half bar), or one per
    beat (a chorale's harmonic rhythm). The chords of a bar share its length."""
    phrase = int(rng.choice([4, 8]))
    bars: list[list[int]] = []
    common = {0: [3, 4, 5, 1], 1: [4, 6], 2: [5, 3], 3: [4, 0, 1], 4: [0, 5], 5: [1, 3, 4],
              6: [0]}
    degree = 0
    split_p = rng.uniform(0.0, 0.4) if meter.beats_per_bar in (2, 4) else rng.uniform(0.0, 0.1)
    for b in range(n_bars):
        pos = b % phrase
        if pos == phrase - 1:
            chords = [0]
        elif pos == phrase - 2:
            chords = [4]
        else:
            degree = int(rng.choice(common[degree])) if b else 0
            chords = [degree]
            if per_beat:
                for _ in range(meter.beats_per_bar - 1):
                    degree = int(rng.choice(common[degree]))
                    chords.append(degree)
            elif rng.random() < split_p:
                chords.append(int(rng.choice(common[degree])))
        if per_beat and len(chords) < meter.beats_per_bar:  # cadence bars: V or I held
            chords = chords * meter.beats_per_bar
        bars.append(chords)
    return bars


def chord_at(chords: list[int], beat_in_bar: float, beats_per_bar: int) -> int:
    return chords[min(int(beat_in_bar * len(chords) / beats_per_bar), len(chords) - 1)]


def chord_pitches(tonic: int, scale: tuple[int, ...], degree: int, octave: int) -> list[int]:
    return [12 * octave + tonic + scale[(degree + k) % 7] + 12 * ((degree + k) // 7)
            for k in (0, 2, 4)]


# ---------------------------------------------------------------- rhythm

def beat_patterns(pulses: int) -> list[list[float]]:
    """Onset offsets within one beat (in beats) for melodic rhythms."""
    if pulses == 2:
        return [[0.0], [0.0, 0.5], [0.0, 0.75], [0.0, 0.25, 0.5, 0.75], [0.0, 0.5, 0.75],
                [0.5], [0.0, 0.25, 0.5]]
    return [[0.0], [0.0, 2 / 3], [0.0, 1 / 3, 2 / 3], [0.0, 1 / 3], [1 / 3, 2 / 3]]


MOTIF_WEIGHTS = {  # per rhythm style, weights of the beat_patterns (binary, ternary)
    "mixed": ([4, 4, 1.5, 1.5, 1, 0.7, 1], [4, 4, 1.5, 1.5, 1]),
    "running": ([0.5, 6, 0.3, 2, 0.5, 0.1, 0.5], [0.5, 2, 6, 0.3, 0.1]),  # reels, jigs
    "lyrical": ([5, 1.5, 1, 0.2, 0.3, 0.3, 0.2], [5, 1.5, 0.5, 0.5, 0.2]),
}
LONG_NOTE_P = {"mixed": 0.15, "running": 0.03, "lyrical": 0.3}


def motif(rng: np.random.Generator, meter: Meter, style: str = "mixed") -> list[float]:
    """One bar of melodic rhythm: onsets in beats from the bar start."""
    patterns = beat_patterns(meter.pulses_per_beat)
    w = MOTIF_WEIGHTS[style][0 if meter.pulses_per_beat == 2 else 1]
    weights = np.array(w[: len(patterns)], dtype=float)
    onsets: list[float] = []
    b = 0
    while b < meter.beats_per_bar:
        if rng.random() < LONG_NOTE_P[style] and b + 2 <= meter.beats_per_bar:
            onsets.append(float(b))  # a long note over two beats
            b += 2
            continue
        pat = patterns[int(rng.choice(len(patterns), p=weights / weights.sum()))]
        onsets.extend(b + o for o in pat)
        b += 1
    return onsets


# ---------------------------------------------------------------- parts

def melody(rng: np.random.Generator, score: Score, bars: list[list[int]], tonic: int,
           scale: tuple[int, ...], accent: float, channel: int, register: int = 0) -> None:
    """A melodic line; register -1 puts a second, lower voice an octave down."""
    meter = score.meter
    style = str(rng.choice(["mixed", "running", "lyrical"], p=[0.5, 0.3, 0.2]))
    motifs = [motif(rng, meter, style) for _ in range(2)]
    octave = int(rng.choice([5, 6])) + register
    pitch_idx = 7 * octave + 4 * int(rng.random() < 0.5)  # index on the scale
    rest_p = rng.uniform(0.0, 0.25)
    # contour: stepwise, arpeggiating (leaps along the chord) or with repeated notes
    steps = [[-2, -1, -1, 0, 1, 1, 2], [-4, -2, -2, 2, 2, 4, -1, 1],
             [0, 0, 0, -1, 1, -2, 2]][int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    phrase = 4
    for b, chords in enumerate(bars):
        rhythm = motifs[(b // 2) % 2] if rng.random() < 0.8 else motif(rng, meter, style)
        if b % phrase == phrase - 1:
            rhythm = [0.0]  # a long note ends the phrase
        for i, on in enumerate(rhythm):
            if rng.random() < rest_p and on % 1:
                continue
            nxt = rhythm[i + 1] if i + 1 < len(rhythm) else meter.beats_per_bar
            chord = chord_at(chords, on, meter.beats_per_bar)
            on_beat = abs(on - round(on)) < 1e-6
            step = int(rng.choice(steps))
            pitch_idx = int(np.clip(pitch_idx + step, 7 * (5 + register) - 3,
                                    7 * (6 + register) + 6))
            if on_beat:  # strong positions take a chord tone
                tones = [chord, chord + 2, chord + 4]
                options = [7 * (pitch_idx // 7) + t % 7 for t in tones]
                pitch_idx = min(options, key=lambda p: abs(p - pitch_idx))
            pitch = 12 * (pitch_idx // 7) + tonic + scale[pitch_idx % 7]
            vel = velocity(rng, on, meter, accent, 80)
            score.notes.append(Note(b * meter.beats_per_bar + on, (nxt - on) * 0.9, pitch,
                                    vel, channel))
    if score.pickup_beats and register == 0:  # the melody leads into the first bar
        for k in range(score.pickup_beats * meter.pulses_per_beat):
            on = -score.pickup_beats + k / meter.pulses_per_beat
            pitch = 12 * octave + tonic + scale[(4 + k) % 7]
            score.notes.append(Note(on, 0.9 / meter.pulses_per_beat, pitch,
                                    velocity(rng, on, meter, accent, 70), channel))


def velocity(rng: np.random.Generator, beat_pos: float, meter: Meter, accent: float,
             base: int) -> int:
    """Metrical accent: downbeat > beat > off-beat, by a clip-wide amount (may be 0)."""
    pos = beat_pos % meter.beats_per_bar
    v = float(base)
    if abs(pos) < 1e-6:
        v += accent * 20
    elif abs(pos - round(pos)) < 1e-6:
        v += accent * 10
    return int(np.clip(v + rng.normal(0, 8), 20, 127))


def bass(rng: np.random.Generator, score: Score, bars: list[list[int]], tonic: int,
         scale: tuple[int, ...], accent: float, channel: int) -> str:
    meter = score.meter
    bpb, pulses = meter.beats_per_bar, meter.pulses_per_beat
    styles = ["bar", "beats", "root_fifth", "walking", "pulses", "syncopated"]
    if pulses == 3:
        styles += ["jig", "jig"]
    style = str(rng.choice(styles))
    for b, chords in enumerate(bars):
        for beat in range(bpb):
            chord = chord_at(chords, beat, bpb)
            root = 12 * 3 + tonic + scale[chord % 7]
            fifth = root + 7
            t = b * bpb + beat
            hits: list[tuple[float, float, int]] = []  # offset, length, pitch
            if style == "bar":
                if beat == 0 or (len(chords) > 1 and beat == bpb // 2):
                    hits = [(0.0, bpb / len(chords) * 0.95, root)]
            elif style == "beats":
                hits = [(0.0, 0.9, root)]
            elif style == "root_fifth":
                if beat == 0:
                    hits = [(0.0, 0.9, root)]
                elif beat == bpb // 2 or bpb == 3:
                    hits = [(0.0, 0.9, fifth if bpb != 3 else root + 12)]
            elif style == "walking":
                hits = [(0.0, 0.9, root + int(rng.choice([0, 2, 4, 5, 7])) if beat else root)]
            elif style == "pulses":
                hits = [(k / pulses, 0.9 / pulses, root) for k in range(pulses)]
            elif style == "syncopated":
                hits = [(0.0, 0.6, root)] if beat % 2 == 0 else [(0.5, 0.4, fifth)]
                if pulses == 3:
                    hits = [(0.0, 0.6, root)] if beat % 2 == 0 else [(2 / 3, 0.3, fifth)]
            elif style == "jig":
                hits = [(0.0, 0.6, root), (2 / 3, 0.3, fifth)]
            for off, length, pitch in hits:
                on = t + off
                score.notes.append(Note(on, length, pitch,
                                        velocity(rng, on, meter, accent, 85), channel))
    return style


def accompaniment(rng: np.random.Generator, score: Score, bars: list[list[int]], tonic: int,
                  scale: tuple[int, ...], accent: float, channel: int) -> str:
    meter = score.meter
    bpb, pulses = meter.beats_per_bar, meter.pulses_per_beat
    styles = ["block", "sustain", "arpeggio", "alberti", "offbeat", "afterbeat", "strum", "vamp"]
    p = np.array([1.2, 1.2, 1.0, 0.6, 0.5, 0.8, 0.8, 0.8])
    style = str(rng.choice(styles, p=p / p.sum()))
    octave = int(rng.choice([4, 5]))
    for b, chords in enumerate(bars):
        for half, degree in enumerate(chords):
            tones = chord_pitches(tonic, scale, degree, octave)
            span = bpb / len(chords)
            start = b * bpb + half * span
            hits: list[tuple[float, float, list[int]]] = []
            n_beats = round(span)
            if style == "sustain":
                hits = [(0.0, span * 0.95, tones)]
            elif style == "block":
                hits = [(float(k), 0.8, tones) for k in range(n_beats)]
            elif style == "afterbeat":  # oom-pah: chords off the first beat
                hits = [(float(k), 0.6, tones) for k in range(n_beats) if (half * n_beats + k)]
            elif style == "vamp":  # boom-chick: a low chord tone on the beat, the chord after it
                off = 0.5 if pulses == 2 else 2 / 3
                hits = [h for k in range(n_beats)
                        for h in ((float(k), 0.4, [tones[0] - 12]), (k + off, 0.3, tones[1:]))]
            elif style == "offbeat":  # ska / reggae: chords between the beats
                off = 0.5 if pulses == 2 else 2 / 3
                hits = [(k + off, 0.3, tones) for k in range(n_beats)]
            elif style == "strum":
                hits = [(k + j / pulses, 0.8 / pulses, tones)
                        for k in range(n_beats) for j in range(pulses)]
            elif style == "arpeggio":
                seq = [*tones, tones[1]]
                hits = [(k + j / pulses, 0.9 / pulses, [seq[(k * pulses + j) % len(seq)]])
                        for k in range(n_beats) for j in range(pulses)]
            else:  # alberti: low-high-mid-high in the subdivision below the pulse
                step = 1 / (2 * pulses) if pulses == 2 else 1 / pulses
                seq = [tones[0], tones[2], tones[1], tones[2]]
                count = round(span / step)
                hits = [(i * step, step * 0.9, [seq[i % 4]]) for i in range(count)]
            for off, length, pitches in hits:
                on = start + off
                for pitch in pitches:
                    score.notes.append(Note(on, length, pitch,
                                            velocity(rng, on, meter, accent, 65), channel))
    return style


def chorale(rng: np.random.Generator, score: Score, bars: list[list[int]], tonic: int,
            scale: tuple[int, ...], accent: float) -> None:
    """Four voices moving together, a chord on every beat (hymns, chorales, string
    writing): the beat is in the harmony, not in a rhythm section. Voices 0-3 are
    soprano, alto, tenor, bass on channels 0, 2, 3, 1."""
    meter = score.meter
    bpb = meter.beats_per_bar
    soprano = 7 * 5 + 2
    channels = (0, 2, 3, 1)
    for b, chords in enumerate(bars):
        for beat in range(bpb):
            degree = chord_at(chords, beat, bpb)
            tones = [degree % 7, (degree + 2) % 7, (degree + 4) % 7]
            cands = [7 * o + t for o in (4, 5, 6) for t in tones]
            soprano = min((c for c in cands if 7 * 5 - 1 <= c <= 7 * 6 + 4),
                          key=lambda c: abs(c - soprano) + rng.uniform(0, 1.5))
            voices = [soprano, soprano - int(rng.choice([2, 3, 4])),
                      7 * 4 + tones[int(rng.integers(3))], 7 * 3 + degree % 7]
            on = b * bpb + beat
            last_in_phrase = b % 4 == 3 and beat == bpb - 1
            for v, idx in enumerate(voices):
                pitch = 12 * (idx // 7) + tonic + scale[idx % 7]
                vel = velocity(rng, on, meter, accent, 75)
                # now and then a voice passes through a neighbour on the half beat
                if rng.random() < 0.15 and not last_in_phrase:
                    half = 0.5 if meter.pulses_per_beat == 2 else 2 / 3
                    step = idx + int(rng.choice([-1, 1]))
                    score.notes.append(Note(on, half * 0.95, pitch, vel, channels[v]))
                    score.notes.append(Note(on + half, (1 - half) * 0.95,
                                            12 * (step // 7) + tonic + scale[step % 7],
                                            vel - 10, channels[v]))
                else:
                    score.notes.append(Note(on, 0.95, pitch, vel, channels[v]))


DRUM_STYLES_SIMPLE = ("rock", "pop", "house", "hiphop", "breakbeat", "halftime", "onedrop",
                      "disco", "funk", "march", "brushes", "random", "random")
DRUM_STYLES_TRIPLE = ("waltz", "jazzwaltz", "march", "random")
DRUM_STYLES_COMPOUND = ("compound", "shuffle", "compound_sparse", "random")
# The band profile's simple-meter styles: a backbeat (snare on 2 and 4) or a one-drop.
DRUM_STYLES_BAND = ("rock", "rock", "pop", "pop", "hiphop", "funk", "disco", "breakbeat",
                    "house", "onedrop", "brushes", "random")

BAND_METERS = (
    Meter("4/4", 4, 2, (58, 175), 0.82),
    Meter("12/8", 4, 3, (45, 85), 0.07),
    Meter("3/4", 3, 2, (70, 180), 0.05),
    Meter("4/4 swing", 4, 3, (85, 200), 0.06, swing=True),
)


def band_hat_every(rng: np.random.Generator, bpm: float) -> int:
    """Hi-hats on sixteenths (0), eighths (1) or quarters (2): busier in slow songs."""
    p = ((0.45, 0.45, 0.10) if bpm < 95 else (0.05, 0.60, 0.35) if bpm > 130
         else (0.20, 0.60, 0.20))
    return int(rng.choice(3, p=p))


def random_pattern(rng: np.random.Generator, bpb: int, grid: int) -> list[list[int]]:
    """A one-bar pattern of its own (what game and pop MIDI files hold): kicks
    likelier on strong positions, snares on some beats, hats on a pulse."""
    steps = bpb * grid
    pattern: list[list[int]] = [[] for _ in range(steps)]
    snare_beats = {b for b in range(bpb) if rng.random() < (0.7 if b % 2 else 0.1)}
    hat_step = int(rng.choice([1, 2] if grid == 4 else [1, 3]))
    for step in range(steps):
        beat, sub = divmod(step, grid)
        strength = 1.0 if step == 0 else 0.6 if sub == 0 else 0.25 if sub * 2 == grid else 0.1
        if rng.random() < strength * rng.uniform(0.5, 1.2):
            pattern[step].append(KICK)
        if sub == 0 and beat in snare_beats:
            pattern[step].append(SNARE if rng.random() < 0.8 else CLAP)
        if step % hat_step == 0 and rng.random() < 0.9:
            pattern[step].append(HAT if rng.random() < 0.85 else OPEN_HAT)
    return pattern


def drums(rng: np.random.Generator, score: Score, accent: float,
          band_bpm: float | None = None) -> str:
    """``band_bpm``: the band profile's styles and hats, at that tempo."""
    meter = score.meter
    bpb, pulses = meter.beats_per_bar, meter.pulses_per_beat
    if pulses == 3:
        style = str(rng.choice(DRUM_STYLES_COMPOUND))
    elif bpb == 3:
        style = str(rng.choice(DRUM_STYLES_TRIPLE))
    else:
        style = str(rng.choice(DRUM_STYLES_BAND if band_bpm else DRUM_STYLES_SIMPLE))
    grid = 4 if pulses == 2 else 3  # steps per beat
    if pulses != 2:
        hat_every = 1
    elif band_bpm:
        hat_every = band_hat_every(rng, band_bpm)
    else:
        hat_every = int(rng.choice([1, 2]))
    intro_bars = int(rng.choice([0, 0, 0, 1, 2]))
    gaps = set(rng.choice(score.n_bars, size=int(rng.integers(0, 3)), replace=False).tolist())
    own = random_pattern(rng, bpb, grid)
    for b in range(score.n_bars):
        if b < intro_bars or b in gaps:
            continue
        fill = b % 8 == 7 and rng.random() < 0.5
        for step in range(bpb * grid):
            beat, sub = divmod(step, grid)
            pos = beat + sub / grid
            hits = (list(own[step]) if style == "random"
                    else drum_hits(style, beat, sub, bpb, grid, hat_every, rng))
            if fill and beat == bpb - 1:
                hits = [TOM + 2 * (sub % 3)] if sub % (2 if grid == 4 else 1) == 0 else []
            for pitch in hits:
                on = b * bpb + pos
                base = 95 if pitch in (KICK, SNARE, CLAP) else 70
                score.notes.append(Note(on, 0.1, pitch, velocity(rng, on, meter, accent * 0.5,
                                                                 base), DRUM_CHANNEL))
        if b % 8 == 0 and b >= intro_bars and rng.random() < 0.5:
            score.notes.append(Note(b * bpb, 0.5, CRASH, 100, DRUM_CHANNEL))
    return style


def drum_hits(style: str, beat: int, sub: int, bpb: int, grid: int, hat_every: int,
              rng: np.random.Generator) -> list[int]:
    hits: list[int] = []
    on_beat = sub == 0
    eighth = grid == 4 and sub % 2 == 0
    if style in ("rock", "pop", "disco", "funk", "breakbeat", "hiphop", "halftime", "onedrop"):
        if hat_every == 0 or (eighth and hat_every == 1) or (on_beat and hat_every == 2):
            hits.append(OPEN_HAT if style == "disco" and sub == 2 else HAT)
        if style == "funk" and grid == 4 and sub % 2:
            hits.append(HAT)
    if style == "rock":
        if on_beat and beat % 2 == 0:
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "pop":
        if (on_beat and beat == 0) or (beat == 1 and sub == 2) or (on_beat and beat == 2):
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "house":
        if on_beat:
            hits.append(KICK)
        if sub == 2:
            hits.append(OPEN_HAT)
        if on_beat and beat % 2 == 1:
            hits.append(CLAP)
    elif style == "disco":
        if on_beat:
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "hiphop":
        if (on_beat and beat == 0) or (beat == 0 and sub == 3) or (beat == 2 and sub == 2):
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "breakbeat":
        if (on_beat and beat == 0) or (beat == 1 and sub == 2) or (beat == 2 and sub == 2):
            hits.append(KICK)
        if (on_beat and beat % 2 == 1) or (beat == 3 and sub == 3):
            hits.append(SNARE)
    elif style == "funk":
        if (on_beat and beat == 0) or (beat == 0 and sub == 3) or (beat == 2 and sub == 2):
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "halftime":
        if on_beat and beat == 0:
            hits.append(KICK)
        if on_beat and beat == bpb // 2 and bpb > 2:
            hits.append(SNARE)
    elif style == "onedrop":
        if on_beat and beat == bpb // 2:
            hits += [KICK, RIM]
    elif style == "march":
        if on_beat and beat == 0:
            hits.append(KICK)
        if sub == 0 and beat > 0:
            hits.append(SNARE)
        if grid == 4 and sub == 2 and rng.random() < 0.3:
            hits.append(SNARE)
    elif style == "brushes":
        if on_beat:
            hits.append(RIDE)
        if on_beat and beat % 2 == 1:
            hits.append(RIM)
    elif style == "waltz":
        if on_beat and beat == 0:
            hits.append(KICK)
        elif on_beat:
            hits.append(HAT if rng.random() < 0.5 else SNARE)
    elif style == "jazzwaltz":
        if on_beat:
            hits.append(RIDE)
        if on_beat and beat == 0:
            hits.append(KICK)
    elif style == "compound":  # 6/8 and 12/8: every eighth on the hat, backbeat snare
        hits.append(HAT)
        if on_beat and beat % 2 == 0:
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "shuffle":  # swung: hat on the beat and the third triplet
        if sub in (0, 2):
            hits.append(RIDE if rng.random() < 0.3 else HAT)
        if on_beat and beat % 2 == 0:
            hits.append(KICK)
        if on_beat and beat % 2 == 1:
            hits.append(SNARE)
    elif style == "compound_sparse":
        if on_beat and beat == 0:
            hits.append(KICK)
        if on_beat and beat > 0:
            hits.append(HAT)
    return hits


PROFILES = ("general", "band")


def compose(rng: np.random.Generator, seconds: float,
            profile: str = "general") -> tuple[Score, float]:
    """A random score filling about ``seconds``, and its tempo (beat BPM). ``profile``:
    ``general`` (every meter and texture) or ``band`` (see the module's docstring)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    band = profile == "band"
    meters = BAND_METERS if band else METERS
    weights = np.array([m.weight for m in meters])
    meter = meters[int(rng.choice(len(meters), p=weights / weights.sum()))]
    lo, hi = meter.bpm_range
    bpm = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    n_bars = int(np.ceil(seconds * bpm / 60 / meter.beats_per_bar)) + 2
    score = Score(meter, n_bars)
    score.pickup_beats = int(rng.choice([0, 0, 0, 1])) if meter.beats_per_bar > 1 else 0
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.65 else MINOR
    texture = "band" if band else str(rng.choice(["band", "chorale", "solo", "polyphony"],
                                                 p=[0.67, 0.13, 0.08, 0.12]))
    bars = progression(rng, n_bars, meter, per_beat=texture == "chorale")
    accent = float(rng.choice([0.0, rng.uniform(0.2, 1.0)], p=[0.45, 0.55]))
    parts: list[str] = []
    has_drums = rng.random() < (0.92 if band else 0.55 if texture == "band" else 0.15)
    if texture == "chorale":
        chorale(rng, score, bars, tonic, scale, accent)
        ensemble = CHORD_PROGRAMS if rng.random() < 0.5 else MELODY_PROGRAMS
        score.programs = {ch: int(rng.choice(ensemble)) for ch in range(4)}
        parts.append("chorale")
    elif texture == "polyphony":  # independent voices over a bass: quartets, wind bands
        ensemble = CHORD_PROGRAMS if rng.random() < 0.5 else MELODY_PROGRAMS
        melody(rng, score, bars, tonic, scale, accent, 0)
        melody(rng, score, bars, tonic, scale, accent, 2, register=-1)
        bass_style = bass(rng, score, bars, tonic, scale, accent, 1)
        score.programs = {ch: int(rng.choice(ensemble)) for ch in range(3)}
        parts += ["polyphony", f"bass_{bass_style}"]
    elif texture == "solo":
        melody(rng, score, bars, tonic, scale, accent, 0)
        score.programs[0] = int(rng.choice(MELODY_PROGRAMS))
        parts.append("solo")
    elif rng.random() < 0.9:
        melody(rng, score, bars, tonic, scale, accent, 0)
        score.programs[0] = int(rng.choice(MELODY_PROGRAMS))
        parts.append("melody")
    if texture == "band" and rng.random() < 0.85:
        style = bass(rng, score, bars, tonic, scale, accent, 1)
        score.programs[1] = int(rng.choice(BASS_PROGRAMS if rng.random() < 0.7
                                           else CHORD_PROGRAMS))
        parts.append(f"bass_{style}")
    if texture == "band" and (rng.random() < 0.85 or len(parts) < 2):
        style = accompaniment(rng, score, bars, tonic, scale, accent, 2)
        score.programs[2] = int(rng.choice(CHORD_PROGRAMS))
        parts.append(f"chords_{style}")
    if has_drums:
        parts.append(f"drums_{drums(rng, score, accent, bpm if band else None)}")
    else:
        parts.append("no_drums")
    score.tags = [meter.name.replace(" ", "_"), *parts]
    return score, bpm

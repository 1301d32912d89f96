"""A composed score -> audio and exact beat annotations.

MIDI goes through FluidSynth (Debian ``fluidsynth``) with one of several
General MIDI soundfonts, then through what rooms and recordings do to music:
reverb, band limits, noise at a random level, gain. Notes are humanised (timing
jitter) but the annotations stay the score's beat times: a listener's beat, not
the jittered note.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import scipy.signal
import soundfile as sf

from gridcast.host.training import scoregen

SAMPLE_RATE = 22050
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
)
TICKS_PER_SECOND = 960  # 480 ticks per beat at the MIDI default of 120 BPM


@dataclass
class Clip:
    audio: np.ndarray  # mono float32 at SAMPLE_RATE
    beats_s: np.ndarray
    beat_in_bar: np.ndarray
    manifest: dict


def available_soundfonts() -> list[str]:
    fonts = [f for f in SOUNDFONTS if os.path.exists(f)]
    if not fonts:
        raise RuntimeError("no General MIDI soundfont found: apt-get install fluidsynth "
                           "fluid-soundfont-gm timgm6mb-soundfont "
                           "musescore-general-soundfont-small")
    return fonts


def write_midi(score: scoregen.Score, tempo: scoregen.TempoMap, jitter_s: float,
               rng: np.random.Generator, path: str) -> None:
    import mido  # training-only dependency

    events: list[tuple[int, int, mido.Message]] = []
    for ch, program in score.programs.items():
        events.append((0, 0, mido.Message("program_change", channel=ch, program=program)))
    for note in score.notes:
        on_s = tempo.seconds(note.beat) + rng.normal(0.0, jitter_s)
        off_s = max(tempo.seconds(note.beat + note.length), on_s + 0.03)
        on, off = max(0, round(on_s * TICKS_PER_SECOND)), round(off_s * TICKS_PER_SECOND)
        events.append((on, 2, mido.Message("note_on", channel=note.channel, note=note.pitch,
                                           velocity=note.velocity)))
        events.append((off, 1, mido.Message("note_off", channel=note.channel, note=note.pitch)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(path)


def synthesize(midi_path: str, soundfont: str, reverb: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(SAMPLE_RATE), "-g", "0.5",
                        "-R", "1" if reverb else "0", "-C", "0", "-F", wav, soundfont,
                        midi_path], check=True, capture_output=True)
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spectrum /= np.sqrt(f) if colour == "pink" else f
    out = np.fft.irfft(spectrum, n)
    return out / (out.std() + 1e-12)


def room(rng: np.random.Generator, audio: np.ndarray, fx: dict) -> np.ndarray:
    """Reverb (exponentially decaying noise), band limits, noise, level."""
    if rng.random() < 0.4:
        rt60 = rng.uniform(0.2, 1.5)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        ir[0] = 1.0 / rng.uniform(0.1, 0.5)
        audio = scipy.signal.fftconvolve(audio, ir / np.abs(ir).sum() * 4, mode="full")[:len(audio)]
        fx["reverb_rt60"] = round(float(rt60), 2)
    if rng.random() < 0.4:
        hp = rng.uniform(40, 180)
        audio = scipy.signal.sosfilt(scipy.signal.butter(2, hp, "hp", fs=SAMPLE_RATE,
                                                         output="sos"), audio)
        fx["hp"] = int(hp)
    if rng.random() < 0.4:
        lp = rng.uniform(2500, 9000)
        audio = scipy.signal.sosfilt(scipy.signal.butter(4, lp, "lp", fs=SAMPLE_RATE,
                                                         output="sos"), audio)
        fx["lp"] = int(lp)
    if rng.random() < 0.45:
        colour = str(rng.choice(["white", "pink", "brown"]))
        snr = rng.uniform(0, 40)
        level = np.sqrt(np.mean(audio ** 2)) / 10 ** (snr / 20)
        audio = audio + coloured_noise(rng, len(audio), colour) * level
        fx["noise"] = f"{colour}@{snr:.0f}dB"
    peak_dbfs = rng.uniform(-20, -2)
    audio = audio / (np.abs(audio).max() + 1e-9) * 10 ** (peak_dbfs / 20)
    fx["peak_dbfs"] = round(float(peak_dbfs), 1)
    return audio.astype(np.float32)


def make_clip(rng: np.random.Generator, seconds: float, soundfonts: list[str],
              profile: str = "general") -> Clip:
    score, bpm = scoregen.compose(rng, seconds, profile)
    meter = score.meter
    first = -score.pickup_beats
    n_beats = score.n_bars * meter.beats_per_bar + score.pickup_beats + 1
    start_s = float(rng.choice([rng.uniform(0.0, 0.6), rng.uniform(1.5, 5.0)], p=[0.85, 0.15]))
    tempo, curve, curve_info = scoregen.tempo_map(rng, bpm, first, n_beats, start_s)
    jitter_ms = float(rng.choice([0.0, rng.uniform(3, 30)], p=[0.3, 0.7]))
    soundfont = soundfonts[int(rng.integers(len(soundfonts)))]
    with tempfile.TemporaryDirectory() as tmp:
        midi = os.path.join(tmp, "score.mid")
        write_midi(score, tempo, jitter_ms / 1000, rng, midi)
        audio = synthesize(midi, soundfont, reverb=bool(rng.random() < 0.5))
    n = int(seconds * SAMPLE_RATE)
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    fx: dict = {}
    audio = room(rng, audio, fx)
    beat_idx = np.arange(first, first + n_beats - 1)
    times = np.array([tempo.seconds(float(b)) for b in beat_idx])
    first_note = min(tempo.seconds(nt.beat) for nt in score.notes)
    keep = (times >= first_note - 0.02) & (times < seconds - 0.05)
    bib = (beat_idx % meter.beats_per_bar) + 1
    manifest = {
        "meter": meter.name, "bpm": round(bpm, 2), "tempo_curve": curve,
        "humanized_ms": round(jitter_ms, 1), "soundfont": os.path.basename(soundfont),
        "tags": ",".join(score.tags), "fx": json.dumps(fx | curve_info),
    }
    return Clip(audio, times[keep], bib[keep], manifest)

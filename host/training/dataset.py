"""Corpus folder -> arrays for training: band magnitudes and beat / downbeat targets."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gridcast.host.analysis import audio, features
from gridcast.host.cli import output as console
from gridcast.host.evaluation import evaluate


def targets(times_s: np.ndarray, n_frames: int, rate: float) -> np.ndarray:
    """1 at the frame of each time, 0.5 on the frames either side (annotations are
    exact, but the network's 10 ms frames are not)."""
    y = np.zeros(n_frames, dtype=np.float32)
    idx = np.round(times_s * rate).astype(int)
    idx = idx[(idx >= 0) & (idx < n_frames)]
    for d in (-1, 1):
        j = np.clip(idx + d, 0, n_frames - 1)
        y[j] = np.maximum(y[j], 0.5)
    y[idx] = 1.0
    return y


def _one(clip: evaluate.Clip) -> tuple[str, np.ndarray, np.ndarray]:
    info = audio.probe(clip.audio_path, 1e5)
    f = features.extract(audio.iter_mono_blocks(info), info.sample_rate, info.frames)
    n, rate = f.n_frames, f.frame_rate_hz
    downs = clip.beats[clip.beat_in_bar == 1] if clip.beat_in_bar is not None else clip.beats[:0]
    y = np.stack([targets(clip.beats, n, rate), targets(downs, n, rate)], axis=1)
    return clip.id, f.band_mag, y


def object_array(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array of arrays of different lengths (np.array would stack them)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def load_corpus(folder: str, cache: str | None = None, jobs: int = 2) -> dict[str, np.ndarray]:
    """{'ids', 'x' (object array of (n, bands)), 'y' (object array of (n, 2))}."""
    if cache and os.path.exists(cache):
        with np.load(cache, allow_pickle=True) as z:
            return {k: z[k] for k in z.files}
    clips = evaluate.load_dataset(folder)
    ids, xs, ys = [], [], []
    with ProcessPoolExecutor(jobs) as pool, console.progress(len(clips), "features") as bar:
        for cid, x, y in pool.map(_one, clips):
            ids.append(cid)
            xs.append(x)
            ys.append(y)
            console.advance(bar)
    data = {"ids": np.array(ids), "x": object_array(xs), "y": object_array(ys)}
    if cache:
        np.savez(cache, ids=data["ids"], x=data["x"], y=data["y"])
    return data

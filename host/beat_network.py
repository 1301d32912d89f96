"""Beat and downbeat activations from a small temporal convolutional network.

The network (after Böck, Davies and Knees, "Multi-task learning of tempo and
beat", ISMIR 2019, made much smaller) reads log band magnitudes and their rise
at 100 frames/s and gives, per frame, the probability that a beat and that a
downbeat falls there. Dilated convolutions (1, 2, 4, ... 512 frames) give each
frame about 20 s of context on both sides, which is what tells a beat from an
off-beat when both carry onsets.

It was trained on music composed and rendered for the purpose
(host/training/), never on the evaluation sets. Inference is plain numpy:
about 24k multiply-adds per frame; the weights are a 114 KB file shipped with
the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MODEL_PATH = os.path.join(os.path.dirname(__file__), "models", "beat_tcn.npz")
KERNEL = 3


@dataclass(frozen=True)
class Network:
    mean: np.ndarray  # (F,) input standardisation
    std: np.ndarray  # (F,)
    w_in: np.ndarray  # (F, C)
    b_in: np.ndarray  # (C,)
    blocks: tuple[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]
    # per block: dilation, w_dil (KERNEL, C, C), b_dil (C,), w_mix (C, C), b_mix (C,)
    w_out: np.ndarray  # (C, 2)
    b_out: np.ndarray  # (2,)
    version: str


def network_input(band_mag: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """(n, 2 * bands): log magnitude and its positive change from the previous frame.

    The training code calls this too (with a random gain), so the network sees
    exactly what it was trained on.
    """
    log = np.log10(1.0 + gain * np.asarray(band_mag, dtype=np.float32))
    rise = np.maximum(np.diff(log, axis=0, prepend=log[:1]), 0.0)
    return np.concatenate([log, rise], axis=1).astype(np.float32)


@lru_cache(maxsize=2)
def load(path: str = MODEL_PATH) -> Network:
    with np.load(path) as z:
        n_blocks = int(z["n_blocks"])
        blocks = tuple((int(z[f"dilation{k}"]), z[f"w_dil{k}"], z[f"b_dil{k}"], z[f"w_mix{k}"],
                        z[f"b_mix{k}"]) for k in range(n_blocks))
        return Network(z["mean"], z["std"], z["w_in"], z["b_in"], blocks, z["w_out"],
                       z["b_out"], str(z["version"]))


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def activations(band_mag: np.ndarray, net: Network | None = None) -> np.ndarray:
    """(n, 2) probabilities per frame: column 0 beat, column 1 downbeat."""
    net = net or load()
    n = len(band_mag)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    x = (network_input(band_mag) - net.mean) / net.std
    h = _elu(x @ net.w_in + net.b_in)
    for dilation, w_dil, b_dil, w_mix, b_mix in net.blocks:
        pad = np.pad(h, ((dilation, dilation), (0, 0)))
        a = b_dil + sum(pad[k * dilation:k * dilation + n] @ w_dil[k] for k in range(KERNEL))
        h = h + _elu(a) @ w_mix + b_mix
    logits = h @ net.w_out + net.b_out
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

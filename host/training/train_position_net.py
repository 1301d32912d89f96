"""Train the C tracker's position network; write native/src/position_net_weights.h.

    python -m gridcast.host.training.train_position_net TRAIN_DIR[,TRAIN_DIR...] VAL_DIR

Needs the ``train`` extra (torch). The network's features come from the C
tracker itself (the ``gridcast_net_features`` tool, built from the same
sources), so training and the device read the same numbers. Each frame is
labelled with its metrical position from the corpus's exact beat times and its
meter (compound meters and swing divide beats in three): beat, half beat,
first or second third, or none, with the same windows as the beat model's
classes (native/src/beat_model.c). The model is a one-hidden-layer network
over the last GC_NET_HISTORY frames' features, as native/src/position_net.c
runs it. Selection is by loss on the validation corpus; the evaluation sets
play no part.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from gridcast.host import extras
from gridcast.host.cli import output as console
from gridcast.host.evaluation import evaluate
from gridcast.host.training import dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "native", "src")
HEADER = os.path.join(SRC, "position_net.h")
WEIGHTS = os.path.join(SRC, "position_net_weights.h")
BUILD = os.path.join(ROOT, "build", "native-release")
TOOL = os.path.join(BUILD, "native", "gridcast_net_features")
BEAT, HALF, THIRD_1, THIRD_2, NONE = range(5)
CLASS_NAMES = ("beat", "half", "third 1", "third 2", "none")
BEAT_WINDOW = 0.03125  # native/src/beat_model.c: half-width of a class, in periods
IGNORE = -1


def _header_number(name: str) -> int:
    with open(HEADER, encoding="utf-8") as f:
        return int(re.search(rf"#define {name} (\d+)", f.read()).group(1))  # type: ignore[union-attr]


def build_tool() -> None:
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                    "-DGRIDCAST_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "--target", "gridcast_net_features"], check=True,
                   stdout=subprocess.DEVNULL)


def features_id() -> str:
    """Changes when the code that computes the features does (not the weights)."""
    h = hashlib.sha1()
    for name in ("fft.c", "decimator.c", "onset.c", "onset.h", "position_net.c", "position_net.h",
                 "tracker.c"):
        with open(os.path.join(SRC, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


def clip_features(audio_path: str, n_features: int) -> tuple[np.ndarray, float, float]:
    """Per-frame features of one clip, and (latency_s, frame_hz)."""
    x, sr = sf.read(audio_path, dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(x.mean(axis=1), dtype="<f4")
    proc = subprocess.run([TOOL, str(sr)], input=mono.tobytes(), capture_output=True, check=True)
    found = re.search(rb"latency_s ([\d.]+) frame_hz ([\d.]+)", proc.stderr)
    if not found:
        raise RuntimeError(f"{TOOL}: {proc.stderr.decode(errors='replace')}")
    latency, frame_hz = float(found.group(1)), float(found.group(2))
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, n_features), latency, frame_hz


def positions(beats: np.ndarray, n: int, latency: float, frame_hz: float,
              ternary: bool) -> np.ndarray:
    """Metrical class of every frame (IGNORE outside the annotated beats).

    Frame k shows audio at time (k + 1) / frame_hz - latency."""
    t = (np.arange(n) + 1.0) / frame_hz - latency
    y = np.full(n, IGNORE, dtype=np.int64)
    i = np.searchsorted(beats, t, side="right") - 1
    inside = (i >= 0) & (i < len(beats) - 1)
    ii = i[inside]
    period = beats[ii + 1] - beats[ii]
    phase = (t[inside] - beats[ii]) / period
    half_w = np.maximum(BEAT_WINDOW, 0.5 / (period * frame_hz)) + 1e-6
    cls = np.full(len(ii), NONE)
    if ternary:
        cls[np.abs(phase - 1 / 3) <= half_w] = THIRD_1
        cls[np.abs(phase - 2 / 3) <= half_w] = THIRD_2
    else:
        cls[np.abs(phase - 0.5) <= half_w] = HALF
    cls[np.minimum(phase, 1 - phase) <= half_w] = BEAT
    y[inside] = cls
    return y


def is_ternary(meter: str) -> bool:
    """Compound meters and swing divide the beat in three."""
    return meter.split()[0] in ("6/8", "9/8", "12/8") or "swing" in meter


def load_dir(folder: str, n_features: int, cache_dir: str) -> list[tuple[np.ndarray, np.ndarray]]:
    cache = os.path.join(cache_dir, f"{os.path.abspath(folder).replace(os.sep, '_')}-"
                                    f"{features_id()}.npz")
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        return list(zip(z["x"], z["y"], strict=True))
    with open(os.path.join(folder, "MANIFEST.tsv"), encoding="utf-8") as f:
        meters = {row["id"]: row["meter"] for row in csv.DictReader(f, delimiter="\t")}
    clips = evaluate.load_dataset(folder)

    def one(clip: evaluate.Clip) -> tuple[np.ndarray, np.ndarray]:
        feats, latency, frame_hz = clip_features(clip.audio_path, n_features)
        return feats, positions(clip.beats, len(feats), latency, frame_hz,
                                is_ternary(meters[clip.id]))

    out = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            console.progress(len(clips), f"features {folder}") as bar:
        for item in pool.map(one, clips):
            out.append(item)
            console.advance(bar)
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(cache, x=dataset.object_array([a for a, _ in out]),
             y=dataset.object_array([b for _, b in out]))
    return out

def stack_history(x: np.ndarray, history: int) -> np.ndarray:
    """Row k: features of frame k, then k - 1, ... (zeros before the first frame)."""
    n, f = x.shape
    out = np.zeros((n, f * history), dtype=np.float32)
    for h in range(history):
        out[h:, h * f:(h + 1) * f] = x[:n - h]
    return out


def to_arrays(clips: list[tuple[np.ndarray, np.ndarray]], history: int):
    xs = [stack_history(x, history) for x, _ in clips]
    ys = [y for _, y in clips]
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = y != IGNORE
    return x[keep], y[keep]


def export(w1, b1, w2, b2, log_prior, path: str, note: str) -> None:
    def rows(a: np.ndarray) -> str:
        return "{" + ", ".join("{" + ", ".join(f"{v:.8e}f" for v in r) + "}" for r in a) + "}"

    def vec(a: np.ndarray) -> str:
        return "{" + ", ".join(f"{v:.8e}f" for v in a) + "}"

    text = "\n".join([
        f"/* Generated by host/training/train_position_net.py ({note}). Do not edit. */",
        "#ifndef GC_POSITION_NET_WEIGHTS_H", "#define GC_POSITION_NET_WEIGHTS_H", "",
        "/* input-major, as native/src/position_net.c sweeps them */",
        f"static const float GC_NET_W1T[{w1.shape[0]}][{w1.shape[1]}] = {rows(w1)};",
        f"static const float GC_NET_B1[{len(b1)}] = {vec(b1)};",
        f"static const float GC_NET_W2T[{w2.shape[0]}][{w2.shape[1]}] = {rows(w2)};",
        f"static const float GC_NET_B2[{len(b2)}] = {vec(b2)};",
        "/* log share of each class in the training frames (beat, half, third 1, third 2, none) */",
        f"static const float GC_NET_LOG_PRIOR[{len(log_prior)}] = {vec(log_prior)};",
        "", "#endif", ""])
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main() -> None:
    extras.require_for_script("torch", "training the position network")
    import torch
    from torch import nn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", help="corpus folder(s), comma-separated")
    parser.add_argument("val", help="validation corpus folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--cache", default=os.path.join(ROOT, "build", "net-features"))
    parser.add_argument("-o", "--out", default=WEIGHTS)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 2)
    rng = np.random.default_rng(args.seed)
    build_tool()
    n_feat, history = _header_number("GC_NET_FEATURES"), _header_number("GC_NET_HISTORY")
    hidden = _header_number("GC_NET_HIDDEN")
    x_tr, y_tr = to_arrays([c for d in args.train.split(",")
                            for c in load_dir(d, n_feat, args.cache)], history)
    x_va, y_va = to_arrays(load_dir(args.val, n_feat, args.cache), history)
    share = np.bincount(y_tr, minlength=5) / len(y_tr)
    console.info(f"{len(y_tr):,} training frames, {len(y_va):,} validation frames; class shares "
                 + ", ".join(f"{n} {s:.3f}" for n, s in zip(CLASS_NAMES, share, strict=True)))
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    model = nn.Sequential(nn.Linear(x_tr.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 5))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * (len(y_tr) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps)
    xt = torch.from_numpy((x_tr - mean) / std)
    yt = torch.from_numpy(y_tr)
    xv, yv = torch.from_numpy((x_va - mean) / std), torch.from_numpy(y_va)
    loss_fn = nn.CrossEntropyLoss()
    best: tuple[float, dict | None] = (float("inf"), None)
    for epoch in range(args.epochs):
        start = time.time()
        order = torch.from_numpy(rng.permutation(len(y_tr)))
        model.train()
        for i in range(len(y_tr) // args.batch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            v = float(loss_fn(model(xv), yv))
        console.info(f"epoch {epoch + 1}: val loss {v:.4f} ({time.time() - start:.0f} s)")
        if v < best[0]:
            best = (v, {k: t.clone() for k, t in model.state_dict().items()})
    assert best[1] is not None  # at least one epoch ran
    model.load_state_dict(best[1])
    p = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    # Fold the input standardisation into the first layer: the device feeds raw features.
    w1 = p["0.weight"] / std[None, :]
    b1 = p["0.bias"] - w1 @ mean
    export(w1.T.astype(np.float32), b1.astype(np.float32), p["2.weight"].T.astype(np.float32),
           p["2.bias"].astype(np.float32), np.log(share).astype(np.float32), args.out,
           f"seed {args.seed}, {hidden} hidden units, val loss {best[0]:.4f}")
    with torch.no_grad():
        pred = model(xv).argmax(dim=1).numpy()
    for c, name in enumerate(CLASS_NAMES):
        sel = y_va == c
        console.info(f"  {name}: recall {np.mean(pred[sel] == c):.3f} over {sel.sum():,} frames")
    console.info(f"wrote {args.out} (val loss {best[0]:.4f})")


if __name__ == "__main__":
    main()

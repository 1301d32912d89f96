"""Train the beat network on a composed corpus; write host/analysis/models/beat_tcn_seed<N>.npz.

    python -m gridcast.host.training.train TRAIN_DIR[,TRAIN_DIR...] VAL_DIR[,VAL_DIR...] \
        [-o OUT.npz] [--init FROM.npz --lr 1e-3]

Needs the ``train`` extra (torch, mido). The network is the one
host/analysis/beat_network.py runs in numpy; this file mirrors it layer by layer and
exports the weights in that module's layout. Selection is by loss on the
validation corpus (composed too, from another seed): the evaluation sets play
no part in training.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from gridcast.host import extras
from gridcast.host.analysis import beat_network
from gridcast.host.cli import output as console
from gridcast.host.training import dataset

CHANNELS = 24
DILATIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DROPOUT = 0.1
CROP_FRAMES = 2000
GAIN_DB = 12.0  # random level change in training, either way


def build_model(n_in: int, channels: int = CHANNELS):  # -> torch.nn.Module
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dilation: int) -> None:
            super().__init__()
            self.dil = nn.Conv1d(channels, channels, beat_network.KERNEL, dilation=dilation,
                                 padding=dilation)
            self.mix = nn.Conv1d(channels, channels, 1)
            self.drop = nn.Dropout(DROPOUT)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + self.mix(self.drop(nn.functional.elu(self.dil(h))))

    class TCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(n_in, channels, 1)
            self.blocks = nn.ModuleList([Block(d) for d in DILATIONS])
            self.out = nn.Conv1d(channels, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, T) -> logits (B, 2, T)
            h = nn.functional.elu(self.inp(x))
            for block in self.blocks:
                h = block(h)
            return self.out(h)

    return TCN()


def export(model, mean: np.ndarray, std: np.ndarray, path: str, version: str) -> None:
    p = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = {"mean": mean, "std": std, "version": np.array(version),
           "w_in": p["inp.weight"][:, :, 0].T.copy(), "b_in": p["inp.bias"],
           "w_out": p["out.weight"][:, :, 0].T.copy(), "b_out": p["out.bias"],
           "n_blocks": np.array(len(DILATIONS))}
    for k, d in enumerate(DILATIONS):
        out[f"dilation{k}"] = np.array(d)
        out[f"w_dil{k}"] = np.transpose(p[f"blocks.{k}.dil.weight"], (2, 1, 0)).copy()
        out[f"b_dil{k}"] = p[f"blocks.{k}.dil.bias"]
        out[f"w_mix{k}"] = p[f"blocks.{k}.mix.weight"][:, :, 0].T.copy()
        out[f"b_mix{k}"] = p[f"blocks.{k}.mix.bias"]
    np.savez(path, **out)


def open_network(path: str):  # -> numpy NpzFile
    """An exported network's arrays; ValueError saying what is wrong otherwise."""
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--init {path}: not readable as a network ({e}); give a .npz "
                         "that train.py or host/analysis/models holds") from e
    missing = [k for k in ("w_in", "b_in", "w_out", "b_out", "n_blocks", "mean", "std")
               if k not in z.files]
    if missing:
        z.close()
        raise ValueError(f"--init {path}: not a beat network (no {', '.join(missing)}); give "
                         "a .npz that train.py or host/analysis/models holds")
    if int(z["n_blocks"]) != len(DILATIONS):
        n = int(z["n_blocks"])
        z.close()
        raise ValueError(f"--init {path}: {n} blocks, this trainer builds {len(DILATIONS)}")
    return z


def load_weights(model, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Put an exported network's weights into ``model``; its input mean and std back."""
    import torch

    with open_network(path) as z:
        state = {"inp.weight": z["w_in"].T[:, :, None], "inp.bias": z["b_in"],
                 "out.weight": z["w_out"].T[:, :, None], "out.bias": z["b_out"]}
        for k in range(len(DILATIONS)):
            state[f"blocks.{k}.dil.weight"] = np.transpose(z[f"w_dil{k}"], (2, 1, 0))
            state[f"blocks.{k}.dil.bias"] = z[f"b_dil{k}"]
            state[f"blocks.{k}.mix.weight"] = z[f"w_mix{k}"].T[:, :, None]
            state[f"blocks.{k}.mix.bias"] = z[f"b_mix{k}"]
        mean, std = z["mean"].copy(), z["std"].copy()
    model.load_state_dict({k: torch.tensor(np.ascontiguousarray(v)) for k, v in state.items()})
    return mean, std


def batches(data: dict, rng: np.random.Generator, batch: int, train: bool):
    order = rng.permutation(len(data["x"])) if train else np.arange(len(data["x"]))
    for i in range(0, len(order), batch):
        xs, ys = [], []
        for j in order[i:i + batch]:
            mag, y = data["x"][j], data["y"][j]
            gain = 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20) if train else 1.0
            x = beat_network.network_input(mag, gain)
            if train and len(x) > CROP_FRAMES:
                s = int(rng.integers(0, len(x) - CROP_FRAMES))
                x, y = x[s:s + CROP_FRAMES], y[s:s + CROP_FRAMES]
            xs.append(x)
            ys.append(y)
        n = max(len(x) for x in xs)
        xb = np.zeros((len(xs), n, xs[0].shape[1]), dtype=np.float32)
        yb = np.zeros((len(xs), n, 2), dtype=np.float32)
        mask = np.zeros((len(xs), n), dtype=np.float32)
        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            xb[k, :len(x)], yb[k, :len(y)], mask[k, :len(x)] = x, y, 1.0
        yield xb, yb, mask


def train(train_dir: str, val_dir: str, out: str, epochs: int, seed: int,
          cache_dir: str | None, channels: int = CHANNELS, init: str | None = None,
          max_lr: float = 3e-3) -> None:
    """``init``: start from that exported network (its input scaling kept) instead of
    random weights, to fine-tune it on more material at a lower ``max_lr``."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    def load(folder: str) -> dict:
        name = folder.rstrip("/").replace("/", "_")
        return dataset.load_corpus(folder, f"{cache_dir}/{name}.npz" if cache_dir else None)

    def load_all(folders: str) -> dict:
        parts = [load(d) for d in folders.split(",")]
        return {k: np.concatenate([p[k] for p in parts]) for k in ("ids", "x", "y")}

    tr, va = load_all(train_dir), load_all(val_dir)
    allx = np.concatenate([beat_network.network_input(m) for m in tr["x"]])
    model = build_model(allx.shape[1], channels)
    if init:
        mean, std = load_weights(model, init)
    else:
        mean, std = allx.mean(axis=0), allx.std(axis=0) + 1e-3
    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=epochs * (
        (len(tr["x"]) + 7) // 8))
    tmean, tstd = torch.tensor(mean)[None, :, None], torch.tensor(std)[None, :, None]

    def loss_of(xb, yb, mask):
        x = (torch.tensor(xb).transpose(1, 2) - tmean) / tstd
        logits = model(x).transpose(1, 2)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.tensor(yb), reduction="none").sum(-1)
        m = torch.tensor(mask)
        return (bce * m).sum() / m.sum()

    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(np.mean([float(loss_of(*b)) for b in batches(va, rng, 8, train=False)]))

    best = validation_loss() if init else np.inf
    if init:
        console.info(f"{init}: validation loss {best:.4f} before fine-tuning")
    for epoch in range(epochs):
        started = time.time()
        model.train()
        total = 0.0
        for xb, yb, mask in batches(tr, rng, 8, train=True):
            opt.zero_grad()
            loss = loss_of(xb, yb, mask)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        val = validation_loss()
        mark = ""
        if val < best:
            best = val
            export(model, mean, std, out, f"tcn{channels}x{len(DILATIONS)}-seed{seed}")
            mark = " (saved)"
        console.info(f"epoch {epoch + 1}/{epochs}: train {total:.2f} val {val:.4f} "
                     f"{time.time() - started:.0f} s{mark}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("train_dir")
    parser.add_argument("val_dir")
    parser.add_argument("-o", "--out", help="default: the shipped model of this --seed "
                        "(host/analysis/models/beat_tcn_seed<N>.npz)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--cache-dir", help="keep the corpus features here between runs")
    parser.add_argument("--init", help="fine-tune this exported network (.npz) instead of "
                        "starting from random weights; it is written only if the validation "
                        "loss falls below its own")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate "
                        "(one-cycle; default 3e-3, about 1e-3 to fine-tune)")
    args = parser.parse_args(argv)
    extras.require_for_script("torch", "training the beat network")
    out = args.out or os.path.join(beat_network.MODEL_DIR, f"beat_tcn_seed{args.seed}.npz")
    try:
        if args.init:
            open_network(args.init).close()  # before the corpora are read
        train(args.train_dir, args.val_dir, out, args.epochs, args.seed, args.cache_dir,
              args.channels, args.init, args.lr)
    except ValueError as e:
        parser.exit(2, f"{parser.prog}: {e}\n")


if __name__ == "__main__":
    main()

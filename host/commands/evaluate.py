"""``gridcast eval``: mir_eval scores on an annotated folder, with baselines."""

from __future__ import annotations

import argparse

from rich.table import Table

from gridcast.host import console, evaluate
from gridcast.host.cli import print_json


def run(args: argparse.Namespace) -> int:
    clips = evaluate.load_dataset(args.folder)
    total = len(clips) * (1 + len(args.compare))
    with console.progress(total, "evaluating") as bar:
        def on_clip(system: str, row: dict) -> None:
            if "error" in row:
                console.error(row["error"])
            console.advance(bar)

        result = evaluate.evaluate(args.folder, compare=tuple(args.compare),
                                   workers=max(1, args.jobs), on_clip=on_clip,
                                   causal=args.causal)
    if args.json:
        print_json(result)
    else:
        _print_table(result)
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_table(result: dict) -> None:
    causal = "lock_s" in result["mean"]
    table = Table(title=f"{result['dataset']} ({result['n_clips']} clips, {result['system']})")
    columns = ["clip", "F", "Cemgil", "CMLt", "AMLt", "downbeat F", "BPM", "ref BPM"]
    for col in columns + (["lock s"] if causal else []):
        table.add_column(col, justify="left" if col == "clip" else "right")
    for row in result["clips"]:
        if "error" in row:
            table.add_row(row["id"], "error", *[""] * (len(columns) - 2 + causal))
            continue
        table.add_row(row["id"], *(_fmt(row[m]) for m in evaluate.METRICS),
                      f"{row['tempo_bpm']:.1f}", f"{row['ref_tempo_bpm']:.1f}",
                      *([f"{row['lock_s']:.1f}"] if causal else []))
    systems = {result["system"]: result} | result["baselines"]
    for name, res in systems.items():
        mean = res["mean"]
        lock = ([f"{mean['lock_s']:.1f} (median {mean['lock_s_median']:.1f})"]
                if causal and "lock_s" in mean else [""] * causal)
        table.add_row(f"mean: {name}", *(_fmt(mean[m]) for m in evaluate.METRICS), "", "",
                      *lock, style="bold")
    console.out.print(table)

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
                                   workers=max(1, args.jobs), on_clip=on_clip)
    if args.json:
        print_json(result)
    else:
        _print_table(result)
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_table(result: dict) -> None:
    table = Table(title=f"{result['dataset']} ({result['n_clips']} clips)")
    for col in ("clip", "F", "Cemgil", "CMLt", "AMLt", "downbeat F", "BPM", "ref BPM"):
        table.add_column(col, justify="left" if col == "clip" else "right")
    for row in result["clips"]:
        if "error" in row:
            table.add_row(row["id"], "error", "", "", "", "", "", "")
            continue
        table.add_row(row["id"], *(_fmt(row[m]) for m in evaluate.METRICS),
                      f"{row['tempo_bpm']:.1f}", f"{row['ref_tempo_bpm']:.1f}")
    systems = {"gridcast": result} | result["baselines"]
    for name, res in systems.items():
        mean = res["mean"]
        table.add_row(f"mean: {name}", *(_fmt(mean[m]) for m in evaluate.METRICS), "", "",
                      style="bold")
    console.out.print(table)

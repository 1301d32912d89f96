"""``gridcast eval``: mir_eval scores on an annotated folder, with baselines."""

from __future__ import annotations

import argparse
import os

from gridcast.host.cli import output

HELP = "score beat tracking against annotations (mir_eval)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="dataset folder with audio/ and annotations/")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--compare", action="append", default=[], metavar="SYSTEM",
                   help="also score a baseline in the same run (librosa)")
    p.add_argument("--causal", action="store_true",
                   help="score the real-time C tracker (fed hop by hop) instead of the "
                        "offline analyzer; adds lock times")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    from gridcast.host import extras
    from gridcast.host.evaluation import evaluate

    for name in args.compare:
        if name in evaluate.SYSTEM_PACKAGES:
            extras.require(evaluate.SYSTEM_PACKAGES[name], f"--compare {name}")
    clips = evaluate.load_dataset(args.folder)
    total = len(clips) * (1 + len(args.compare))
    with output.progress(total, "evaluating") as bar:
        def on_clip(system: str, row: dict) -> None:
            if "error" in row:
                output.error(row["error"])
            output.advance(bar)

        result = evaluate.evaluate(args.folder, compare=tuple(args.compare),
                                   workers=max(1, args.jobs), on_clip=on_clip,
                                   causal=args.causal)
    if args.json:
        output.print_json(result)
    else:
        _print_table(result)
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_table(result: dict) -> None:
    from rich.table import Table

    from gridcast.host.evaluation import evaluate

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
    output.out.print(table)

"""The offline analyzer with other beat networks or settings, scored as ``gridcast eval`` does.

For networks that do not ship (a fine-tuned copy from ``host/training/train.py --init``)
and analyzer settings that are not the defaults: the analysis and the scoring are
``gridcast eval``'s own (host/evaluation/evaluate.evaluate); only the networks, or the
settings, differ. One JSON line per set: beat F, downbeat F, the bar stage on the
annotated beats, and ``octave_wrong``, the clips whose tempo is over 30 % from the
annotated one.

    python bench/beat_networks.py SET [SET ...] [--networks A.npz,B.npz]
        [--downbeat-networks C.npz,D.npz] [--param prior_weight=0 ...]

``--networks`` replaces the shipped ensemble; ``--downbeat-networks`` takes only the
downbeat activation from those networks (the beats from the others); ``--param`` sets
an AnalyzerParams field (host/analysis/params.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gridcast.host.analysis import beat_network
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.evaluation import evaluate


def use_networks(paths: list[str]) -> None:
    beat_network.MODEL_PATHS = tuple(paths)
    beat_network.load.cache_clear()


def use_downbeat_networks(paths: list[str]) -> None:
    down = tuple(beat_network.load(p) for p in paths)
    original = beat_network.activations

    def activations(band_mag, nets=None):
        a = original(band_mag, nets)
        if nets is None and len(a):
            a = a.copy()
            a[:, 1] = original(band_mag, down)[:, 1]
        return a

    beat_network.activations = activations


def params_from(settings: list[str]) -> AnalyzerParams:
    fields = {f.name for f in dataclasses.fields(AnalyzerParams)}
    changes = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--param {setting!r}: give NAME=VALUE with a field of "
                             "AnalyzerParams (host/analysis/params.py)")
        changes[name] = float(value)
    return dataclasses.replace(AnalyzerParams(), **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+")
    parser.add_argument("--networks", help="comma-separated .npz files (default: shipped)")
    parser.add_argument("--downbeat-networks", help="comma-separated .npz files")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    try:
        params = params_from(args.param)
        for paths in filter(None, (args.networks, args.downbeat_networks)):
            for path in paths.split(","):
                try:
                    beat_network.load(path)  # a bad file fails here, not in a worker
                except KeyError as e:
                    raise ValueError(f"{path}: not a beat network ({e.args[0]}); give a .npz "
                                     "that host/training/train.py wrote") from e
    except (ValueError, OSError) as e:
        parser.error(str(e))
    if args.networks:
        use_networks(args.networks.split(","))
    if args.downbeat_networks:
        use_downbeat_networks(args.downbeat_networks.split(","))
    for folder in args.sets:
        # Workers are forked (evaluate's pool), so they see the networks set above.
        result = evaluate.evaluate(folder, params=params, workers=args.jobs)
        mean = result["mean"]
        print(json.dumps({
            "set": os.path.basename(folder.rstrip("/")), "networks": args.networks or "shipped",
            "downbeat_networks": args.downbeat_networks, "params": args.param,
            "beat_f": round(mean["f_measure"], 4), "downbeat_f": round(mean["downbeat_f"], 4),
            "bars_given_beats": result.get("bars_given_beats"),
            "octave_wrong": sum(1 for c in result["clips"] if c.get("ref_tempo_bpm") and
                                abs(c["tempo_bpm"] / c["ref_tempo_bpm"] - 1) > 0.3),
            "clips": result["n_clips"]}), flush=True)


if __name__ == "__main__":
    main()

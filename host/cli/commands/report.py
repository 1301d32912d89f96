"""``gridcast report``: drift over time per device, read from the agent's database."""

from __future__ import annotations

import argparse
import time

from gridcast.host.cli import output
from gridcast.host.cli.device_table import ms

HELP = "drift over time per device, from the database (--png)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--png", help="write drift over time per device to this PNG")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://... (default: the "
                   "config's)")
    p.add_argument("--config", help="agent config to take the database from")
    p.add_argument("--minutes", type=float, default=0, help="only the last N minutes")
    p.add_argument("--threshold-ms", type=float, default=1.0)
    p.add_argument("--devices", nargs="*", help="only these devices")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Drift over time per device from the database: a PNG and a service-level summary."""
    from gridcast.agent import config as agent_config
    from gridcast.agent import drift_plot, drift_stats
    from gridcast.agent.store import open_store

    db = args.database or agent_config.load(args.config).database
    store = open_store(db)
    try:
        since_us = int((time.time() - args.minutes * 60) * 1e6) if args.minutes else 0
        ids = args.devices or [d.id for d in store.devices()]
        rows = []
        for device_id in ids:
            drift = [v for _, v in store.drift_samples(device_id, since_us)]
            seconds = store.aggregates(device_id, "1s", since_us // 1_000_000)
            within = sum(a.p99_us <= args.threshold_ms * 1000 for a in seconds)
            rows.append({"id": device_id, "samples": len(drift),
                         "drift_p50_ms": drift_stats.percentile_ms(drift, 50),
                         "drift_p99_ms": drift_stats.percentile_ms(drift, 99),
                         "seconds": len(seconds),
                         "seconds_within_threshold": within,
                         "lost": store.lost(device_id)})
        png = None
        if args.png:
            png = drift_plot.render(store, args.png, ids, since_us, args.threshold_ms,
                                    title=f"drift per device ({db.split('@')[-1]})")
    finally:
        store.close()
    if args.json:
        output.print_json({"database": db.split("@")[-1], "threshold_ms": args.threshold_ms,
                    "devices": rows, "png": png})
        return 0
    for r in rows:
        level = (f"{100 * r['seconds_within_threshold'] / r['seconds']:.1f} % of "
                 f"{r['seconds']} s within {args.threshold_ms:g} ms") if r["seconds"] else "no data"
        output.info(f"{r['id']}: {r['samples']} samples, p50 {ms(r['drift_p50_ms'])} ms, p99 "
                    f"{ms(r['drift_p99_ms'])} ms, {r['lost']} batches lost; {level}")
    if png:
        output.info(f"plot {png}")
    return 0

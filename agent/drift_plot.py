"""Drift over time per device, as a PNG: the service level at a glance.

Top: every reported drift sample (|drift|, log scale) by the time the agent
received it, one colour per device, with the 1 ms line. Bottom: the p99 of
|drift| per stored 1 s bucket.
"""

from __future__ import annotations

import os

import numpy as np

from gridcast.agent.store import Store


def render(store: Store, out_png: str, device_ids: list[str] | None = None,
           since_us: int = 0, threshold_ms: float = 1.0, title: str = "drift") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = device_ids or [d.id for d in store.devices()]
    fig, (ax_s, ax_p) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    series = {d: store.drift_samples(d, since_us) for d in ids}
    starts = [s[0][0] for s in series.values() if s]
    t0 = min(starts) / 1e6 if starts else None
    for device_id, samples in series.items():
        if not samples or t0 is None:
            continue
        t = np.array([s[0] for s in samples], dtype=float) / 1e6 - t0
        d = np.abs(np.array([s[1] for s in samples], dtype=float)) / 1000
        # |drift| below 1 us is drawn at 1 us (log scale)
        ax_s.plot(t, np.maximum(d, 1e-3), ".", ms=3, label=f"{device_id} ({len(d)} samples)")
        aggs = store.aggregates(device_id, "1s", int(since_us // 1_000_000))
        if aggs:
            ax_p.step([a.bucket_s - t0 for a in aggs], [max(a.p99_us, 1) / 1000 for a in aggs],
                      where="post", label=device_id)
    for ax in (ax_s, ax_p):
        ax.axhline(threshold_ms, color="#c0392b", lw=1, ls="--")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if t0 is not None:
        ax_s.legend(loc="upper right", fontsize=8)
    else:
        ax_s.text(0.5, 0.5, "no drift samples stored", ha="center", transform=ax_s.transAxes)
    ax_s.set_ylabel("|drift| per beat (ms)")
    ax_p.set_ylabel("p99 |drift| per second (ms)")
    ax_p.set_xlabel("seconds since the first report (agent receive time)")
    ax_s.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png

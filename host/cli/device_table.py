"""The fleet as a terminal table (``gridcast devices`` and ``monitor``): one row per
device from the daemon's /api/devices, drift in ms."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table


def ms(v: float | None) -> str:
    """A value in ms with three decimals, or '-' when there is none."""
    return "-" if v is None else f"{v:.3f}"


def device_table(devices: list[dict]) -> Table:
    """Devices (the API's dicts) -> a rich table; alerting rows red, offline ones dim."""
    from rich.table import Table

    table = Table(title=f"{len(devices)} devices, drift over the last 60 s")
    for col in ("device", "state", "bundle", "drift p50 ms", "drift p99 ms", "samples", "lost",
                "last seen"):
        table.add_column(col, justify="left" if col in ("device", "state", "bundle") else "right")
    for d in devices:
        seen = time.strftime("%H:%M:%S", time.localtime(d["last_seen_us"] / 1e6)) if d.get(
            "last_seen_us") else "-"
        bundle = f"{d['active_track']} v{d['bundle_version']}" if d.get("active_track") else "-"
        style = "red" if d.get("alert") else ("dim" if not d.get("online") else None)
        table.add_row(d["id"], d["state"], bundle, ms(d.get("drift_p50_ms")),
                      ms(d.get("drift_p99_ms")), str(d.get("samples_60s", 0)),
                      str(d.get("lost", 0)), seen, style=style)
    return table

"""``gridcast agent``, ``devices``, ``monitor`` and ``report``: the daemon and its views."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from gridcast.host import console
from gridcast.host.cli import print_json
from gridcast.protocol.errors import GridcastError

TOKEN_FILE = "gridcast-agent.token"


def run_agent(args: argparse.Namespace) -> int:
    from gridcast.agent import config as agent_config
    from gridcast.agent.daemon import serve, setup_logging

    cfg = agent_config.load(args.config)
    setup_logging(cfg.log_level)
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    try:
        import uvloop  # a faster event loop: about twice the requests per second

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(serve(cfg, args.token_file))
    except OSError as exc:
        raise GridcastError(str(exc)) from exc
    return 0


def _token(args: argparse.Namespace) -> str | None:
    if getattr(args, "token", None):
        return str(args.token)
    if os.environ.get("GRIDCAST_TOKEN"):
        return os.environ["GRIDCAST_TOKEN"]
    path = getattr(args, "token_file", TOKEN_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return None


def api_request(args: argparse.Namespace, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> object:
    """One call to the daemon; GridcastError with its message when it says no."""
    url = args.agent.rstrip("/") + path
    headers = {"Content-Type": content_type} if body is not None else {}
    token = _token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise GridcastError(f"agent {args.agent}: {exc.code} {message}") from exc
    except urllib.error.URLError as exc:
        raise GridcastError(f"agent {args.agent} is not reachable ({exc.reason}); is "
                            "`gridcast agent` running?") from exc


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _device_table(devices: list[dict]):
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
        table.add_row(d["id"], d["state"], bundle, _ms(d.get("drift_p50_ms")),
                      _ms(d.get("drift_p99_ms")), str(d.get("samples_60s", 0)),
                      str(d.get("lost", 0)), seen, style=style)
    return table


def devices(args: argparse.Namespace) -> int:
    found = api_request(args, "/api/devices")
    assert isinstance(found, list)
    if args.json:
        print_json(found)
    else:
        console.out.print(_device_table(found))
    return 0


def monitor(args: argparse.Namespace) -> int:
    from rich.live import Live

    with Live(console=console.out, refresh_per_second=4, screen=False) as live:
        try:
            shown = 0
            while True:
                found = api_request(args, "/api/devices")
                assert isinstance(found, list)
                live.update(_device_table(found))
                shown += 1
                if args.count and shown >= args.count:
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
    return 0


def report(args: argparse.Namespace) -> int:
    """Drift over time per device from the database: a PNG and a service-level summary."""
    from gridcast.agent import config as agent_config
    from gridcast.agent import drift_plot
    from gridcast.agent.store import open_store

    db = args.database or agent_config.load(args.config).database
    store = open_store(db)
    try:
        since_us = int((time.time() - args.minutes * 60) * 1e6) if args.minutes else 0
        ids = args.devices or [d.id for d in store.devices()]
        rows = []
        for device_id in ids:
            drift = np.abs([v for _, v in store.drift_samples(device_id, since_us)])
            seconds = store.aggregates(device_id, "1s", since_us // 1_000_000)
            within = sum(a.p99_us <= args.threshold_ms * 1000 for a in seconds)
            rows.append({"id": device_id, "samples": int(drift.size),
                         "drift_p50_ms": round(float(np.percentile(drift, 50)) / 1000, 4)
                         if drift.size else None,
                         "drift_p99_ms": round(float(np.percentile(drift, 99)) / 1000, 4)
                         if drift.size else None,
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
        print_json({"database": db.split("@")[-1], "threshold_ms": args.threshold_ms,
                    "devices": rows, "png": png})
        return 0
    for r in rows:
        level = (f"{100 * r['seconds_within_threshold'] / r['seconds']:.1f} % of "
                 f"{r['seconds']} s within {args.threshold_ms:g} ms") if r["seconds"] else "no data"
        console.info(f"{r['id']}: {r['samples']} samples, p50 {_ms(r['drift_p50_ms'])} ms, p99 "
                     f"{_ms(r['drift_p99_ms'])} ms, {r['lost']} batches lost; {level}")
    if png:
        console.info(f"plot {png}")
    return 0


def provision(args: argparse.Namespace) -> int:
    """Credentials and ACL entries for a device (or the agent), and the device's config."""
    from gridcast.agent.provisioning import AGENT_USER, Provisioner
    from gridcast.protocol import keys

    prov = Provisioner(args.mosquitto_dir)
    if args.agent:
        done = prov.provision(args.device or AGENT_USER, role="agent")
        console.info(f"agent user {done.user}: password in {done.config_path} (set "
                     f"broker_username / broker_password in the agent's config)")
    else:
        if not args.device:
            raise GridcastError("give the device id (or --agent for the agent's user)")
        if not args.key_file:
            raise GridcastError("a device needs --key-file (the site key it will trust)")
        done = prov.provision(args.device, key=keys.load(args.key_file), broker=args.broker or "",
                              config_dir=args.out)
        console.info(f"device {done.user}: config with its credentials in {done.config_path} "
                     f"(flash it: gridcast flash --config {done.config_path} ...)")
    console.info(f"mosquitto files in {args.mosquitto_dir}: passwd, acl. The listener needs:\n"
                 + prov.mosquitto_conf() + "then reload mosquitto (SIGHUP).")
    return 0

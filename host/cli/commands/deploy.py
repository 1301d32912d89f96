"""``gridcast deploy``: send a bundle to devices, at once or as a staged rollout.

Three ways: straight to devices over a transport (MQTT or serial); a staged rollout
(``--canary``) run by this command with its own drift collection; or ``--agent URL``,
which hands the deployment to the running daemon and follows it to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from gridcast.host.cli import bundle_file, output
from gridcast.host.cli.options import TOKEN_FILE, agent_client, broker_host_port
from gridcast.protocol.errors import GridcastError

HELP = "send a bundle to devices (MQTT or serial)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle file (gridcast bundle build)")
    p.add_argument("--to", nargs="+", metavar="ID", help="device ids")
    p.add_argument("--all", action="store_true", help="every device online on the broker")
    p.add_argument("--broker", help="mqtt://HOST:PORT")
    p.add_argument("--via", metavar="serial:PORT", help="one device on a serial port instead")
    p.add_argument("--json", action="store_true")
    p.add_argument("--parallel", type=int, default=128, help="devices served at once")
    p.add_argument("--chunk-bytes", type=int, default=None, help="override the transport's")
    p.add_argument("--canary", type=int, default=0, metavar="N",
                   help="staged rollout: the first N devices first, the rest only if they "
                        "activate and stay under --max-drift-ms for --soak seconds")
    p.add_argument("--max-drift-ms", type=float, default=1.0, metavar="MS",
                   help="|drift| p99 the canaries must stay under (default 1 ms)")
    p.add_argument("--soak", type=float, default=30.0, metavar="S",
                   help="seconds the canaries are watched (default 30)")
    p.add_argument("--agent", metavar="URL", help="let the running agent daemon do the "
                   "deployment (http://127.0.0.1:8750); its database holds the drift")
    p.add_argument("--token", help="API token for --agent (default: $GRIDCAST_TOKEN or "
                   "--token-file)")
    p.add_argument("--token-file", default=TOKEN_FILE)


def run(args: argparse.Namespace) -> int:
    if args.agent:
        return _deploy_via_agent(args)
    if args.canary:
        return asyncio.run(_staged(args))
    return asyncio.run(_deploy(args))


async def _deploy(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from gridcast.agent import deploy
    from gridcast.agent.transport import open_transport

    data, info = bundle_file.read(args.bundle)
    url = args.via or args.broker
    if not url:
        raise GridcastError("deploy needs --broker mqtt://HOST:PORT or --via serial:PORT")
    async with open_transport(url) as transport:
        ids = list(args.to or [])
        if args.all:
            ids = await transport.discover(1.0)
            if not ids:
                raise GridcastError(f"no devices online at {url}")
        if not ids:
            raise GridcastError("say which devices: --to ID... or --all")
        started = time.monotonic()
        show = output.err.is_terminal and not args.json
        with Progress("{task.description}", BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                      console=output.err, disable=not show, transient=True) as bar:
            task = bar.add_task(f"deploying to {len(ids)}", total=len(data) * len(ids))
            results = await deploy.deploy(
                transport, ids, data, info.track_id, info.bundle_version,
                chunk_bytes=args.chunk_bytes, parallel=args.parallel,
                progress=lambda _dev, n: bar.advance(task, n))
        elapsed = time.monotonic() - started
    ok = sum(r.ok for r in results)
    if args.json:
        output.print_json({"bundle": args.bundle, "track_id": info.track_id, "seconds": round(
            elapsed, 3), "devices": [r.to_dict() for r in results]})
    else:
        for r in results:
            if r.ok:
                output.info(f"{r.id}: active {info.track_id} v{info.bundle_version} "
                            f"({r.seconds:.2f} s)")
            else:
                output.error(r.error)
        output.info(f"{ok}/{len(results)} devices in {elapsed:.2f} s")
    return 0 if ok == len(results) else 1


def _deploy_via_agent(args: argparse.Namespace) -> int:
    """Upload the bundle to the daemon, start a (staged) deployment, follow it to the end."""
    data, info = bundle_file.read(args.bundle)
    client = agent_client(args)
    uploaded = client.post("/api/bundles", data)
    assert isinstance(uploaded, dict)
    body = {"bundle": uploaded["sha256"], "devices": args.to or "all", "canary": args.canary,
            "max_drift_ms": args.max_drift_ms, "soak_s": args.soak if args.canary else 0}
    created = client.post("/api/deployments", body)
    assert isinstance(created, dict)
    output.info(f"deployment {created['id']} of {info.track_id} v{info.bundle_version} to "
                f"{len(created['devices'])} devices started on {args.agent}")
    state = created
    last = ""
    while state.get("state") not in ("done", "done-with-failures", "stopped"):
        time.sleep(0.5)
        found = client.get(f"/api/deployments/{created['id']}")
        assert isinstance(found, dict)
        state = found
        if state.get("state") != last:
            last = str(state.get("state"))
            output.info(f"  {last}: {state.get('reason', '')}")
    return _rollout_outcome(args, state)


def _rollout_outcome(args: argparse.Namespace, result: dict) -> int:
    if args.json:
        output.print_json(result)
    else:
        for device_id, why in result.get("failed", {}).items():
            output.error(f"{device_id}: {why}")
        if result.get("rolled_back"):
            output.info(f"rolled back: {', '.join(result['rolled_back'])}")
        output.info(f"{result['state']}: {result.get('reason', '')}")
    return 0 if result["state"] == "done" else 1


async def _staged(args: argparse.Namespace) -> int:
    """A staged rollout without the daemon: this command collects the canaries' drift
    itself (a plain subscription, so a running daemon's collectors lose nothing)."""
    import tempfile

    from gridcast.agent.collector import Collector
    from gridcast.agent.presence import is_online
    from gridcast.agent.rollout import RolloutPlan, rollout
    from gridcast.agent.store import SqliteStore
    from gridcast.agent.transport import open_transport

    data, info = bundle_file.read(args.bundle)
    if not args.broker:
        raise GridcastError("a staged rollout needs --broker mqtt://HOST:PORT (or --agent URL)")
    host, port = broker_host_port(args.broker)
    with tempfile.TemporaryDirectory(prefix="gridcast-rollout-") as folder:
        store = SqliteStore(os.path.join(folder, "drift.db"))
        collector = Collector(store, host, port, shared=False, clean=True,
                              client_id=f"gridcast-rollout-{os.getpid()}")
        await asyncio.to_thread(collector.start)
        try:
            async with open_transport(args.broker) as transport:
                ids = list(args.to or [])
                if args.all:
                    ids = await transport.discover(1.0)
                if not ids:
                    raise GridcastError("say which devices: --to ID... or --all")
                online = set(ids)

                def still_online(device_id: str) -> bool:
                    status = transport.status.get(device_id)
                    return device_id in online if status is None else is_online(status)

                plan = RolloutPlan(ids, args.canary, args.max_drift_ms, args.soak)
                output.info(f"staged rollout of {info.track_id} v{info.bundle_version}: "
                            f"{min(args.canary, len(ids))} canaries, soak {args.soak:g} s, "
                            f"|drift| p99 <= {args.max_drift_ms:g} ms")
                result = await rollout(
                    transport, store, data, info.track_id, info.bundle_version, plan,
                    online=still_online,
                    on_state=lambda r: output.info(f"  {r.state}: {r.reason}"))
        finally:
            await asyncio.to_thread(collector.stop)
            store.close()
    return _rollout_outcome(args, result.to_dict())

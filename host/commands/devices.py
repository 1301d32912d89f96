"""``gridcast sim``, ``deploy``, ``play``, ``stop``, ``seek``: the device path from the host."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
from urllib.parse import urlparse

from gridcast.host import console
from gridcast.host.cli import print_json
from gridcast.host.errors import BeatMapError
from gridcast.protocol import bundle_reader, keys
from gridcast.protocol.errors import GridcastError, ProtocolError


def _broker_host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise GridcastError(f"--broker {url!r}: expected mqtt://HOST:PORT")
    return parsed.hostname, parsed.port or 1883


def _skews(text: str) -> list[int]:
    try:
        return [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise GridcastError(f"--skew-ppm {text!r}: expected numbers like 0,0,150") from exc


def sim(args: argparse.Namespace) -> int:
    from gridcast.hil.observer import Observer
    from gridcast.hil.report import write_report
    from gridcast.hil.simulator import Simulator

    host, port = _broker_host_port(args.broker)
    key = keys.load(args.key_file)
    simulator = Simulator(args.devices, f"{host}:{port}", key, args.state_dir,
                          _skews(args.skew_ppm), heap=args.heap, prefix=args.prefix)
    observer = Observer(host, port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    observer.start()
    simulator.start()
    console.info(f"{args.devices} simulated devices on {host}:{port} "
                 f"({', '.join(d.id for d in simulator.devices)}); state in "
                 f"{simulator.state_dir}. Ctrl-C stops them"
                 + (" and writes the report" if args.report else ""))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    while not stop.wait(0.5):
        if deadline is not None and time.monotonic() >= deadline:
            break
        dead = [d.id for d in simulator.devices if not d.alive]
        if dead:
            console.warn(f"device process ended: {', '.join(dead)} (see device.log)")
            for d in simulator.devices:
                if not d.alive:
                    d.start()
    simulator.stop()
    observer.stop()
    if args.report:
        report = write_report(simulator, observer, args.report)
        console.info(f"report {args.report}; LED log {report['led_log']}")
    return 0


def _bundle_file(path: str) -> tuple[bytes, bundle_reader.BundleInfo]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BeatMapError(f"{path}: cannot read bundle ({exc.strerror})") from exc
    import io

    try:
        info = bundle_reader.inspect(io.BytesIO(data), len(data))
    except ProtocolError as exc:
        raise BeatMapError(f"{path}: not a valid bundle: {exc}") from exc
    return data, info


async def _deploy(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from gridcast.agent import deploy
    from gridcast.agent.transport import open_transport

    data, info = _bundle_file(args.bundle)
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
        show = console.err.is_terminal and not args.json
        with Progress("{task.description}", BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                      console=console.err, disable=not show, transient=True) as bar:
            task = bar.add_task(f"deploying to {len(ids)}", total=len(data) * len(ids))
            results = await deploy.deploy(
                transport, ids, data, info.track_id, info.bundle_version,
                chunk_bytes=args.chunk_bytes, parallel=args.parallel,
                progress=lambda _dev, n: bar.advance(task, n))
        elapsed = time.monotonic() - started
    ok = sum(r.ok for r in results)
    if args.json:
        print_json({"bundle": args.bundle, "track_id": info.track_id, "seconds": round(
            elapsed, 3), "devices": [r.to_dict() for r in results]})
    else:
        for r in results:
            if r.ok:
                console.info(f"{r.id}: active {info.track_id} v{info.bundle_version} "
                             f"({r.seconds:.2f} s)")
            else:
                console.error(r.error)
        console.info(f"{ok}/{len(results)} devices in {elapsed:.2f} s")
    return 0 if ok == len(results) else 1


def deploy(args: argparse.Namespace) -> int:
    if args.agent:
        return _deploy_via_agent(args)
    if args.canary:
        return asyncio.run(_staged(args))
    return asyncio.run(_deploy(args))


def _deploy_via_agent(args: argparse.Namespace) -> int:
    """Upload the bundle to the daemon, start a (staged) deployment, follow it to the end."""
    from gridcast.host.commands.agent import api_request

    data, info = _bundle_file(args.bundle)
    uploaded = api_request(args, "/api/bundles", data, "application/octet-stream")
    assert isinstance(uploaded, dict)
    body = {"bundle": uploaded["sha256"], "devices": args.to or "all", "canary": args.canary,
            "max_drift_ms": args.max_drift_ms, "soak_s": args.soak if args.canary else 0}
    created = api_request(args, "/api/deployments", json.dumps(body).encode())
    assert isinstance(created, dict)
    console.info(f"deployment {created['id']} of {info.track_id} v{info.bundle_version} to "
                 f"{len(created['devices'])} devices started on {args.agent}")
    state = created
    last = ""
    while state.get("state") not in ("done", "done-with-failures", "stopped"):
        time.sleep(0.5)
        found = api_request(args, f"/api/deployments/{created['id']}")
        assert isinstance(found, dict)
        state = found
        if state.get("state") != last:
            last = str(state.get("state"))
            console.info(f"  {last}: {state.get('reason', '')}")
    return _rollout_outcome(args, state)


def _rollout_outcome(args: argparse.Namespace, result: dict) -> int:
    if args.json:
        print_json(result)
    else:
        for device_id, why in result.get("failed", {}).items():
            console.error(f"{device_id}: {why}")
        if result.get("rolled_back"):
            console.info(f"rolled back: {', '.join(result['rolled_back'])}")
        console.info(f"{result['state']}: {result.get('reason', '')}")
    return 0 if result["state"] == "done" else 1


async def _staged(args: argparse.Namespace) -> int:
    """A staged rollout without the daemon: this command collects the canaries' drift
    itself (a plain subscription, so a running daemon's collectors lose nothing)."""
    import tempfile

    from gridcast.agent.collector import Collector
    from gridcast.agent.rollout import RolloutPlan, rollout
    from gridcast.agent.store import SqliteStore
    from gridcast.agent.transport import open_transport

    data, info = _bundle_file(args.bundle)
    if not args.broker:
        raise GridcastError("a staged rollout needs --broker mqtt://HOST:PORT (or --agent URL)")
    host, port = _broker_host_port(args.broker)
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
                    payload = transport.status.get(device_id)  # type: ignore[attr-defined]
                    if payload is None:
                        return device_id in online
                    try:
                        from gridcast.protocol import messages

                        return bool(messages.decode(payload).state == "online")
                    except ProtocolError:
                        return False

                plan = RolloutPlan(ids, args.canary, args.max_drift_ms, args.soak)
                console.info(f"staged rollout of {info.track_id} v{info.bundle_version}: "
                             f"{min(args.canary, len(ids))} canaries, soak {args.soak:g} s, "
                             f"|drift| p99 <= {args.max_drift_ms:g} ms")
                result = await rollout(
                    transport, store, data, info.track_id, info.bundle_version, plan,
                    online=still_online,
                    on_state=lambda r: console.info(f"  {r.state}: {r.reason}"))
        finally:
            await asyncio.to_thread(collector.stop)
            store.close()
    return _rollout_outcome(args, result.to_dict())


def _start_time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        if text.startswith("+"):
            return int((time.time() + float(text[1:])) * 1e6)
        return int(float(text) * 1e6)
    except ValueError as exc:
        raise GridcastError(f"--at {text!r}: give Unix seconds or +SECONDS from now") from exc


async def _play(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport

    track = args.track
    grid = None
    if os.path.exists(track):
        data, info = _bundle_file(track)
        track = info.track_id
        if getattr(args, "live", False):
            grid = _grid_s(data, info)
    elif getattr(args, "live", False):
        raise GridcastError(f"--live needs the bundle file (for its beat grid), not {track!r}")
    async with open_transport(args.broker) as transport:
        responder = SyncResponder(transport)
        responder.start()
        ids = args.to or None
        start = await playback.play(transport, ids, track, _start_time(args.at), args.lead)
        if not args.json:
            console.info(f"playing {track!r} from {start / 1e6:.6f} (agent clock)"
                         + (f" for {args.seconds:g} s" if args.seconds else ""))
        try:
            if grid is not None:
                from gridcast.agent.live_follow import run_live

                console.info("following the room (Ctrl-C stops)")
                try:
                    stats = await asyncio.to_thread(
                        run_live, transport, ids, grid, start, asyncio.get_running_loop(),
                        device=args.device, rate=args.rate,
                        max_seconds=args.seconds or None)
                    console.info(f"live follow: {stats.matched} of {stats.live_beats} live "
                                 f"beats matched, {stats.seeks} grid moves "
                                 f"{stats.corrections_ms}")
                finally:
                    await playback.stop(transport, ids)
            elif args.seconds:
                await asyncio.sleep(max(0.0, start / 1e6 - time.time()) + args.seconds)
                await playback.stop(transport, ids)
        finally:
            await responder.stop()
    if args.json:
        print_json({"track_id": track, "start_unix_us": start, "devices": ids or "all",
                    "sync_answers": responder.answered})
    return 0


def _grid_s(data: bytes, info: bundle_reader.BundleInfo) -> list[float]:
    """The bundle's beat times in seconds (the grid live follow keeps in phase)."""
    import io

    f = io.BytesIO(data)
    cursor = bundle_reader.BeatCursor(f, info)
    times = [cursor.next_time_us() for _ in range(info.beat_count)]
    return [t / 1e6 for t in times if t is not None]


def play(args: argparse.Namespace) -> int:
    return asyncio.run(_play(args))


async def _stop(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.transport import open_transport

    async with open_transport(args.broker) as transport:
        await playback.stop(transport, args.to or None, _start_time(args.at) or 0)
    return 0


def stop(args: argparse.Namespace) -> int:
    return asyncio.run(_stop(args))


async def _seek(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.transport import open_transport

    at = _start_time(args.at) or int((time.time() + 0.5) * 1e6)
    async with open_transport(args.broker) as transport:
        await playback.seek(transport, args.to or None, int(args.position * 1e6), at)
    return 0


def seek(args: argparse.Namespace) -> int:
    return asyncio.run(_seek(args))

"""Agent API latency under concurrent load: p50/p99 with 200 clients at once on loopback.

Starts mosquitto and the daemon (`gridcast agent`, its own process), gives it --devices
fake devices with status and a stream of telemetry (so the summaries are real work),
then sends --requests requests from --concurrency clients at once (a mix of
/api/devices, /api/devices/{id}, /api/devices/{id}/drift, /health and /metrics) and
reports latency percentiles, all measured by an aiohttp client in this process.

    python bench/agent_api.py [--devices 100] [--concurrency 200] [--requests 4000] [--json]
                              [--checkout DIR] [--per-path]

It also reports the daemon's CPU per 1000 requests of each phase (and while idle), and
with --per-path each read path alone: what one request of it costs the daemon.

--checkout DIR runs the daemon from another checkout of gridcast (e.g. a `git worktree`
of an older commit) with this venv, so old and new code can be compared in the same
run, on the same machine load: its folders are linked as the `gridcast` package on
the daemon's PYTHONPATH (the client side, this process, stays on this checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def feed(port: int, devices: int, stop: threading.Event) -> None:
    import paho.mqtt.client as mqtt

    from gridcast.protocol import messages, topics

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-devices")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for d in range(devices):
        client.publish(topics.device_topic(f"dev-{d:03d}", topics.STATUS),
                       messages.encode("status", state="online", fw_version=1,
                                       active_track="song", bundle_version=1), qos=1, retain=True)
    seq = 0
    while not stop.is_set():  # each device: one batch of two beats per second
        for d in range(devices):
            client.publish(topics.device_topic(f"dev-{d:03d}", topics.TELEMETRY),
                           messages.encode("telemetry", seq=seq, drift_us=[120, -80], boot=1),
                           qos=1)
        seq += 1
        stop.wait(1.0)
    client.loop_stop()


async def bursts(base: str, devices: int, concurrency: int, rounds: int) -> list[float]:
    """`concurrency` requests sent at the same instant, `rounds` times, 0.2 s apart."""
    import aiohttp

    paths = ["/api/devices", "/health", "/metrics"]
    paths += [f"/api/devices/dev-{d:03d}" for d in range(devices)]
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(path: str) -> None:
            started = time.perf_counter()
            async with session.get(base + path) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - started)

        for r in range(rounds):
            await asyncio.gather(*(one(paths[(r * concurrency + i) % len(paths)])
                                   for i in range(concurrency)))
            await asyncio.sleep(0.2)
    return latencies


async def load(base: str, devices: int, concurrency: int, total: int) -> list[float]:
    import aiohttp

    paths = ["/api/devices", "/health", "/metrics"]
    paths += [f"/api/devices/dev-{d:03d}" for d in range(0, devices, 7)]
    paths += [f"/api/devices/dev-{d:03d}/drift" for d in range(0, devices, 13)]
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(paths[i % len(paths)])
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                started = time.perf_counter()
                async with session.get(base + path) as resp:
                    await resp.read()
                    if resp.status >= 500 and path != "/health":
                        raise RuntimeError(f"{path}: {resp.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def run_wrk(base: str, connections: int, path: str = "/api/devices",
            seconds: int = 5) -> dict | None:
    """wrk (Debian's, in C): `connections` clients on `path` for `seconds`, each sending
    again as soon as it is answered. None when wrk is not installed."""
    import re
    import shutil

    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}",
                          f"-d{seconds}s", "--latency", base + path],
                         capture_output=True, text=True, check=True)

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out.stdout)
        assert m, out.stdout
        value, unit = float(m.group(1)), m.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    total = re.search(r"(\d+) requests in", out.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    errors = re.search(r"Socket errors: (.*)", out.stdout)
    return {"p50_ms": ms("50"), "p99_ms": ms("99"),
            "requests_per_s": round(float(rate.group(1))) if rate else None,
            "requests": int(total.group(1)) if total else 0,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else None}


def per_path(base: str, pid: int) -> dict[str, dict]:
    """Each read path alone (wrk, 50 connections, 3 s): the daemon's CPU per request (us)
    and wrk's p99, to see which path costs what."""
    out = {}
    for path in ("/api/devices", "/api/devices/dev-007", "/api/devices/dev-007/drift",
                 "/health", "/metrics"):
        before = cpu_s(pid)
        result = run_wrk(base, 50, path, 3)
        if result is None:
            break
        out[path] = {"daemon_cpu_us_per_request":
                     round((cpu_s(pid) - before) * 1e6 / max(result["requests"], 1), 1),
                     "p99_ms": result["p99_ms"], "requests": result["requests"],
                     "non_2xx": result["non_2xx"]}
    return out


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) a process has used so far, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def checkout_env(checkout: str | None, folder: str) -> dict[str, str] | None:
    """The environment that makes the daemon import gridcast from `checkout`: a `gridcast`
    package of links to its top-level folders, first on PYTHONPATH (ahead of the venv's
    editable install, whose finder comes after the path). None: this checkout."""
    if checkout is None:
        return None
    checkout = os.path.abspath(checkout)
    package = os.path.join(folder, "code", "gridcast")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("agent", "host", "protocol", "firmware", "hil", "native"):
        os.symlink(os.path.join(checkout, name), os.path.join(package, name))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(package), env.get("PYTHONPATH")) if p)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--checkout", help="run the daemon from this checkout (see above)")
    parser.add_argument("--per-path", action="store_true",
                        help="then each read path alone: daemon CPU per request, p99")
    args = parser.parse_args()

    from gridcast.agent.broker import Mosquitto, free_port

    folder = tempfile.mkdtemp(prefix="gridcast-bench-api-")
    with Mosquitto(folder=os.path.join(folder, "broker")) as broker:
        port = free_port()
        conf = os.path.join(folder, "agent.toml")
        with open(conf, "w") as f:
            f.write(f'[agent]\nbroker = "{broker.url}"\ndatabase = "sqlite://{folder}/a.db"\n'
                    f"port = {port}\nlog_level = \"warning\"\n")
        # The bench is the API's only client: no per-token rate limit (older checkouts
        # ignore the variable).
        os.environ["GRIDCAST_API_RATE_PER_S"] = "0"
        daemon = subprocess.Popen([sys.executable, "-m", "gridcast.host.cli", "agent",
                                   "--config", conf, "--token-file",
                                   os.path.join(folder, "token")],
                                  env=checkout_env(args.checkout, folder))
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(broker.port, args.devices, stop))
        feeder.start()
        base = f"http://127.0.0.1:{port}"
        try:
            from gridcast.agent.client import AgentClient, AgentError

            client = AgentClient(base, timeout_s=2)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if len(client.get("/api/devices")) >= args.devices:
                        break
                except AgentError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not come up with the devices in 30 s")
                time.sleep(0.2)
            # Some telemetry stored, summaries have samples; the daemon's own CPU while
            # idle (telemetry coming in, summaries refreshed) over the last 2 s of the wait.
            time.sleep(1)
            cpu0 = cpu_s(daemon.pid)
            time.sleep(2)
            cpu1 = cpu_s(daemon.pid)
            wrk = run_wrk(base, args.concurrency)
            cpu2 = cpu_s(daemon.pid)
            burst = asyncio.run(bursts(base, args.devices, args.concurrency, 20))
            cpu3 = cpu_s(daemon.pid)
            started = time.monotonic()
            lat = asyncio.run(load(base, args.devices, args.concurrency, args.requests))
            wall = time.monotonic() - started
            cpu4 = cpu_s(daemon.pid)
            paths = per_path(base, daemon.pid) if args.per_path else None
        finally:
            stop.set()
            feeder.join()
            daemon.terminate()
            daemon.wait(30)
    ms = np.asarray(lat) * 1000
    bms = np.asarray(burst) * 1000
    # Daemon CPU per 1000 requests: a figure other processes' load barely moves (latency
    # under a loaded machine does), so old and new code compare on it.
    if wrk is not None:
        wrk["daemon_cpu_ms_per_1000"] = round((cpu2 - cpu1) * 1e6 / max(wrk["requests"], 1), 1)
    report = {"checkout": os.path.abspath(args.checkout or ROOT), "devices": args.devices,
              "concurrency": args.concurrency,
              "daemon_idle_cpu_pct": round((cpu1 - cpu0) / 2 * 100, 1), "wrk": wrk,
              "burst": {"requests": len(bms), "p50_ms": round(float(np.percentile(bms, 50)), 2),
                        "p99_ms": round(float(np.percentile(bms, 99)), 2),
                        "max_ms": round(float(bms.max()), 2),
                        "daemon_cpu_ms_per_1000": round((cpu3 - cpu2) * 1e6 / len(bms), 1)},
              "saturated": {"requests": len(ms), "seconds": round(wall, 2),
                            "requests_per_s": round(len(ms) / wall),
                            "p50_ms": round(float(np.percentile(ms, 50)), 2),
                            "p99_ms": round(float(np.percentile(ms, 99)), 2),
                            "max_ms": round(float(ms.max()), 2),
                            "daemon_cpu_ms_per_1000": round((cpu4 - cpu3) * 1e6 / len(ms), 1)},
              "per_path": paths}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        b, s = report["burst"], report["saturated"]
        if wrk:
            print(f"wrk, {args.concurrency} connections on /api/devices: p50 {wrk['p50_ms']} ms, "
                  f"p99 {wrk['p99_ms']} ms, {wrk['requests_per_s']} requests/s, non-2xx "
                  f"{wrk['non_2xx']}, socket errors {wrk['socket_errors'] or 'none'}; daemon CPU "
                  f"{wrk['daemon_cpu_ms_per_1000']} ms per 1000 requests.")
        print(f"{args.devices} devices. Bursts of {args.concurrency} simultaneous requests "
              f"({b['requests']} in all): p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, max "
              f"{b['max_ms']} ms; daemon CPU {b['daemon_cpu_ms_per_1000']} ms per 1000.")
        print(f"Saturated ({args.concurrency} clients, each sending again at once, "
              f"{s['requests']} requests): p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
              f"{s['requests_per_s']} requests/s; daemon CPU {s['daemon_cpu_ms_per_1000']} ms "
              "per 1000.")
        print(f"Daemon CPU while idle (telemetry in, summaries refreshed): "
              f"{report['daemon_idle_cpu_pct']} %.")
        for path, r in (paths or {}).items():
            print(f"{path} alone (wrk, 50 connections): daemon CPU "
                  f"{r['daemon_cpu_us_per_request']} us per request, p99 {r['p99_ms']} ms, "
                  f"non-2xx {r['non_2xx']}.")


if __name__ == "__main__":
    main()

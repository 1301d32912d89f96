"""``gridcast deploy``: send a bundle to devices, at once or as a staged rollout.

One deployment service (agent/deployment.py) does the work, in one of two places:
the agent daemon, when ``--agent URL`` names one or one answers at the default
local URL on the same broker (the command uploads the bundle, starts the
deployment and follows it); otherwise this process, straight to the devices over
``--broker`` or ``--via`` (with a collector of the canaries' drift for ``--canary``).
The output is the same either way: one line per device for a plain deployment,
the rollout's states and outcome for a staged one (and for ``--agent``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from typing import TYPE_CHECKING

from gridcast.host.cli import bundle_file, output
from gridcast.host.cli.options import TOKEN_FILE, agent_client, broker_host_port
from gridcast.protocol.bundle_reader import BundleInfo
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.deployment import Deployment

HELP = "send a bundle to devices (MQTT or serial)"
PROBE_TIMEOUT_S = 0.5  # the default local agent: answers at once when it runs
POLL_S = 0.5
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


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
    p.add_argument("--force", action="store_true",
                   help="send even to devices that report this bundle active")
    p.add_argument("--agent", metavar="URL", help="let the running agent daemon do the "
                   "deployment (http://127.0.0.1:8750); its database holds the drift. "
                   "Without it, an agent running at that default URL on the same broker "
                   "is used when found")
    p.add_argument("--local", action="store_true",
                   help="run the deployment in this process even when an agent is running")
    p.add_argument("--token", help="API token for --agent (default: $GRIDCAST_TOKEN or "
                   "--token-file)")
    p.add_argument("--token-file", default=TOKEN_FILE)


def run(args: argparse.Namespace) -> int:
    data, info = bundle_file.read(args.bundle)
    if args.agent:
        return _via_agent(args, data, info, staged_output=True)
    found = None if args.local or args.via else _running_agent(args)
    if found:
        output.info(f"an agent is running at {found}: the deployment runs there "
                    "(--local runs it in this process)")
        if not (args.to or args.all):
            raise GridcastError("say which devices: --to ID... or --all")
        args.agent = found
        try:
            return _via_agent(args, data, info, staged_output=bool(args.canary))
        except GridcastError as exc:
            raise GridcastError(f"{exc} (--local deploys from this process instead)") from exc
    return asyncio.run(_in_process(args, data, info))


def _running_agent(args: argparse.Namespace) -> str | None:
    """The default local agent's URL when it runs, serves the broker asked for (any, if
    none was) and we hold its token; else None (this process does the deployment)."""
    from gridcast.agent.client import DEFAULT_URL, AgentClient, AgentError, find_token

    token = find_token(args.token, args.token_file)
    try:
        answer = AgentClient(DEFAULT_URL, token, PROBE_TIMEOUT_S).request("/health")
    except AgentError:
        return None
    health = answer.data
    if not isinstance(health, dict) or "collectors" not in health:
        return None  # something else listens there
    if args.broker and not _same_broker(args.broker, str(health.get("broker_url", ""))):
        return None  # it serves another fleet
    if token is None:
        output.warn(f"an agent is running at {DEFAULT_URL}, but no API token was found "
                    "(--token, $GRIDCAST_TOKEN or --token-file); deploying from this process")
        return None
    return DEFAULT_URL


def _same_broker(a: str, b: str) -> bool:
    try:
        (host_a, port_a), (host_b, port_b) = broker_host_port(a), broker_host_port(b)
    except GridcastError:
        return False
    local = host_a in LOCAL_HOSTS and host_b in LOCAL_HOSTS
    return port_a == port_b and (host_a == host_b or local)


# -- the daemon does it ------------------------------------------------------------------
def _via_agent(args: argparse.Namespace, data: bytes, info: BundleInfo,
               staged_output: bool) -> int:
    """Upload the bundle to the daemon at --agent, start the deployment, follow it to the
    end. ``staged_output``: report states and outcome (else one line per device)."""
    client = agent_client(args)
    started = time.monotonic()
    uploaded = client.post("/api/bundles", data)
    assert isinstance(uploaded, dict)
    body = {"bundle": uploaded["sha256"], "devices": args.to or "all", "canary": args.canary,
            "max_drift_ms": args.max_drift_ms, "soak_s": args.soak if args.canary else 0,
            "force": args.force}
    created = client.post("/api/deployments", body)
    assert isinstance(created, dict)
    output.info(f"deployment {created['id']} of {info.track_id} v{info.bundle_version} to "
                f"{len(created['devices'])} devices started on {args.agent}")
    state = created
    last = ""
    while state.get("state") not in ("done", "done-with-failures", "stopped"):
        time.sleep(POLL_S)
        found = client.get(f"/api/deployments/{created['id']}")
        assert isinstance(found, dict)
        state = found
        if staged_output and state.get("state") != last:
            last = str(state.get("state"))
            output.info(f"  {last}: {state.get('reason', '')}")
    if staged_output:
        return _rollout_outcome(args, state)
    return _device_outcome(args, info, state, time.monotonic() - started)


# -- this process does it ----------------------------------------------------------------
async def _in_process(args: argparse.Namespace, data: bytes, info: BundleInfo) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from gridcast.agent.deployment import BundleRef, TransportFleet, in_process

    staged = bool(args.canary)
    if staged and not args.broker:
        raise GridcastError("a staged rollout needs --broker mqtt://HOST:PORT (or --agent URL)")
    url = args.via or args.broker
    if not url:
        raise GridcastError("deploy needs --broker mqtt://HOST:PORT or --via serial:PORT")
    if staged:
        broker_host_port(url)  # a clear line for a malformed URL
    async with in_process(url, collect_drift=staged, parallel=args.parallel,
                          chunk_bytes=args.chunk_bytes) as service:
        ids = list(args.to or [])
        if args.all:
            ids = await service.transport.discover(1.0)
            if not ids:
                raise GridcastError(f"no devices online at {url}")
        if not ids:
            raise GridcastError("say which devices: --to ID... or --all")
        if not args.via:  # the broker's retained status messages: what each device runs
            assert isinstance(service.fleet, TransportFleet)
            await service.fleet.settle(ids)
        dep = service.plan(BundleRef(hashlib.sha256(data).hexdigest(), info.track_id,
                                     info.bundle_version), ids, canary=args.canary,
                           max_drift_ms=args.max_drift_ms,
                           soak_s=args.soak if staged else 0.0, force=args.force)
        sending = len(dep.devices) - len(dep.skipped)
        started = time.monotonic()
        if staged:
            output.info(f"staged rollout of {info.track_id} v{info.bundle_version}: "
                        f"{min(args.canary, sending)} canaries, soak {args.soak:g} s, "
                        f"|drift| p99 <= {args.max_drift_ms:g} ms")
            service.listeners.append(_state_line)
        show = output.err.is_terminal and not args.json and not staged
        with Progress("{task.description}", BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                      console=output.err, disable=not show, transient=True) as bar:
            task = bar.add_task(f"deploying to {sending}", total=len(data) * sending)
            await service.run(dep, data, progress=lambda _dev, n: bar.advance(task, n))
    if staged:
        return _rollout_outcome(args, dep.to_dict())
    return _device_outcome(args, info, dep.to_dict(), time.monotonic() - started)


def _state_line(dep: Deployment) -> None:
    if dep.state != "pending":
        output.info(f"  {dep.state}: {dep.reason}")


# -- the outcome, the same from either place ---------------------------------------------
def _device_outcome(args: argparse.Namespace, info: BundleInfo, record: dict,
                    elapsed: float) -> int:
    """A plain deployment: one line (or JSON entry) per device."""
    from gridcast.agent.deployment import ALREADY_ACTIVE

    results = [record["results"].get(d) or {"id": d, "ok": False, "reason": "not-sent",
                                            "error": f"{d}: not deployed ({record['reason']})"}
               for d in record["devices"]]
    ok = sum(bool(r["ok"]) for r in results)
    if args.json:
        output.print_json({"bundle": args.bundle, "track_id": info.track_id,
                           "seconds": round(elapsed, 3), "deployment": record["id"],
                           "devices": results})
    else:
        for r in results:
            if r["reason"] == ALREADY_ACTIVE:
                output.info(f"{r['id']}: already active {info.track_id} "
                            f"v{info.bundle_version} (not sent; --force sends it)")
            elif r["ok"]:
                output.info(f"{r['id']}: active {info.track_id} v{info.bundle_version} "
                            f"({r['seconds']:.2f} s)")
            else:
                output.error(r["error"])
        output.info(f"{ok}/{len(results)} devices in {elapsed:.2f} s")
    return 0 if ok == len(results) else 1


def _rollout_outcome(args: argparse.Namespace, result: dict) -> int:
    """A staged deployment (or any through --agent): the state it ended in, and why."""
    if args.json:
        output.print_json(result)
    else:
        for device_id, why in result.get("failed", {}).items():
            output.error(f"{device_id}: {why}")
        if result.get("rolled_back"):
            output.info(f"rolled back: {', '.join(result['rolled_back'])}")
        output.info(f"{result['state']}: {result.get('reason', '')}")
    return 0 if result["state"] == "done" else 1

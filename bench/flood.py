"""A flooding device against the agent: are the others' batches stored, is the flooder throttled?

Starts mosquitto and the daemon (`gridcast agent`, its own process, SQLite), then, each in
its own process, --devices normal devices publishing telemetry --hz times a second and
one device ("flooder") publishing --flood-rate telemetry messages (or --leaf status or
sync requests) a second, for --seconds.
Afterwards it reads the daemon's API (the flooder's ``throttled``/``dropped``, the
collector's counters, the Prometheus metric) and, once the daemon has stopped, the
database: every normal device's batches stored and lost (by seq), how late the agent
received them (publish time -> ``received_us``), the flooder's batches stored.

    python bench/flood.py [--devices 20] [--hz 2] [--seconds 10] [--flood-rate 10000]
                          [--qos 1] [--no-limit] [--rate R] [--burst B] [--tls] [--json]
    python bench/flood.py --drop-cost [--flood-rate 30000] [--seconds 3]

--no-limit runs the same with the ingest limit off (ingest_rate_per_device = 0), to see
what the limit buys.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FLOODER = "flooder"


def _client(port: int, name: str, ca_file: str | None):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    if ca_file:
        client.tls_set(ca_certs=ca_file)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _status(client, device_id: str) -> None:
    from gridcast.protocol import messages, topics

    client.publish(topics.device_topic(device_id, topics.STATUS),
                   messages.encode("status", state="online", fw_version=1, active_track="",
                                   bundle_version=0), qos=1, retain=True).wait_for_publish(5)


def devices_process(port: int, devices: int, hz: float, seconds: float, go: float, out,
                    ca_file: str | None) -> None:
    """Normal devices: one batch each, --hz times a second; device_us = publish time."""
    from gridcast.agent.clock import now_us
    from gridcast.protocol import messages, topics

    client = _client(port, "bench-devices", ca_file)
    names = [f"dev-{d:03d}" for d in range(devices)]
    for name in names:
        _status(client, name)
    time.sleep(max(0.0, go - time.time()))
    infos, seq = [], 0
    while seq < seconds * hz:
        for name in names:
            payload = messages.encode("telemetry", seq=seq, device_us=now_us(),
                                      drift_us=[seq % 50, -(seq % 50)], boot=1)
            infos.append(client.publish(topics.device_topic(name, topics.TELEMETRY), payload,
                                        qos=1))
        seq += 1
        time.sleep(max(0.0, go + seq / hz - time.time()))
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    out.put({"sent_per_device": seq})


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def flood_payload(leaf: str, i: int) -> bytes:
    """Message ``i`` of a flood on ``leaf``: each valid, so all the agent lets in is work."""
    from gridcast.protocol import messages, topics

    if leaf == topics.STATUS:
        return messages.encode("status", state="online", fw_version=1, active_track="",
                               bundle_version=i)
    if leaf == topics.SYNC_REQ:
        return messages.encode("sync_req", seq=i, t1_us=i)
    return messages.encode("telemetry", seq=i, drift_us=[1], boot=1)


def flooder_process(port: int, rate: float, seconds: float, qos: int, go: float, out,
                    ca_file: str | None, leaf: str = "telemetry") -> None:
    """One device sending ``rate`` messages a second on ``leaf``, each valid (telemetry: a
    batch with its own seq, so every one the agent let through would be stored). MQTT
    packets written straight to the socket, as an attacker would: a Python MQTT client
    cannot publish this fast."""
    import socket
    import threading

    from gridcast.protocol import topics

    client = _client(port, "bench-flooder-status", ca_file)
    _status(client, FLOODER)
    client.loop_stop()
    client.disconnect()
    sock = socket.create_connection(("127.0.0.1", port))
    if ca_file:
        import ssl

        sock = ssl.create_default_context(cafile=ca_file).wrap_socket(
            sock, server_hostname="127.0.0.1")
    sock.sendall(_packet(0x10, _utf8("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
                         + _utf8("bench-flooder")))
    reader = threading.Thread(target=lambda: all(iter(lambda: sock.recv(65536), b"")),
                              daemon=True)  # CONNACK and PUBACKs, read and ignored
    reader.start()
    topic = _utf8(topics.device_topic(FLOODER, leaf))
    time.sleep(max(0.0, go - time.time()))
    started, sent, chunk = time.time(), 0, max(1, int(rate / 200))
    while time.time() - started < seconds:
        packets = []
        for i in range(sent, sent + chunk):
            payload = flood_payload(leaf, i)
            packet_id = (i % 65535 + 1).to_bytes(2, "big") if qos else b""
            packets.append(_packet(0x30 | (qos << 1), topic + packet_id + payload))
        sock.sendall(b"".join(packets))
        sent += chunk
        time.sleep(max(0.0, started + sent / rate - time.time()))
    elapsed = time.time() - started
    sock.sendall(b"\xe0\x00")  # DISCONNECT: the broker closes once it has read everything
    reader.join(120)  # closing first would reset the connection, losing what it has not read
    sock.close()
    out.put({"flood_sent": sent, "flood_s": round(elapsed, 2),
             "flood_rate_achieved": round(sent / elapsed)})


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collector_counts(client) -> tuple[int, int]:
    stats = client.get("/health")["collectors"][0]
    return int(stats["received"]), int(stats.get("rate_dropped", 0))


def drop_cost(seconds: float, rate: float) -> dict:
    """What one dropped message costs the agent's network thread: a Collector with a tiny
    bucket on its own MqttConnection in this process (no daemon, no API), the flooder in
    another, messages read per second and per CPU second of this process."""
    from gridcast.agent.broker import Mosquitto
    from gridcast.agent.collector import Collector
    from gridcast.agent.mqtt import MqttConnection
    from gridcast.agent.rate_limit import IngestLimiter
    from gridcast.agent.store import SqliteStore

    folder = tempfile.mkdtemp(prefix="gridcast-bench-drop-")
    with Mosquitto(folder=os.path.join(folder, "broker")) as broker:
        conn = MqttConnection("127.0.0.1", broker.port, client_id="drop-cost")
        collector = Collector(SqliteStore(os.path.join(folder, "a.db")), conn, shared=False,
                              limiter=IngestLimiter(100, 100))
        collector.start()
        conn.start()
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        go = time.time() + 1.5
        proc = ctx.Process(target=flooder_process,
                           args=(broker.port, rate, seconds + 2, 1, go, out, None))
        proc.start()
        time.sleep(max(0.0, go - time.time()) + 1.0)  # past the bucket's burst
        r0, t0, c0 = collector.stats.received, time.monotonic(), time.process_time()
        time.sleep(seconds)
        r1, t1, c1 = collector.stats.received, time.monotonic(), time.process_time()
        flood = out.get(timeout=120)
        proc.join()
        collector.stop()
        conn.stop()
    return {"drop_cost": {"flood_rate_achieved": flood["flood_rate_achieved"],
                          "read_per_s": round((r1 - r0) / (t1 - t0)),
                          "read_per_cpu_s": round((r1 - r0) / max(1e-6, c1 - c0)),
                          "dropped": collector.stats.rate_dropped,
                          "load_average": os.getloadavg()[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--hz", type=float, default=2.0, help="batches a second, a device")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flood-rate", type=float, default=10_000.0)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    parser.add_argument("--no-limit", action="store_true")
    parser.add_argument("--rate", type=float, help="ingest_rate_per_device (default: agent's)")
    parser.add_argument("--burst", type=int, help="ingest_burst_per_device (default: agent's)")
    parser.add_argument("--tls", action="store_true", help="a TLS-only broker (mqtts://)")
    parser.add_argument("--leaf", default="telemetry", choices=("telemetry", "status", "sync/req"),
                        help="what the flooder sends (status and sync requests go through the "
                             "transport and the registry, not the collector)")
    parser.add_argument("--drop-cost", action="store_true",
                        help="only measure what a dropped message costs the network thread")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.drop_cost:
        print(json.dumps(drop_cost(args.seconds, args.flood_rate), indent=1))
        return

    from gridcast.agent.broker import Mosquitto, free_port
    from gridcast.agent.client import AgentClient, AgentError

    folder = tempfile.mkdtemp(prefix="gridcast-bench-flood-")
    db = os.path.join(folder, "a.db")
    log_path = os.path.join(folder, "agent.log")
    with Mosquitto(folder=os.path.join(folder, "broker"), tls=args.tls) as broker:
        ca_file = broker.ca_file if args.tls else None
        port = free_port()
        conf = os.path.join(folder, "agent.toml")
        with open(conf, "w") as f:
            f.write(f'[agent]\nbroker = "{broker.url}"\ndatabase = "sqlite://{db}"\n'
                    f'port = {port}\nlog_level = "info"\n'
                    + ("ingest_rate_per_device = 0\n" if args.no_limit else "")
                    + (f"ingest_rate_per_device = {args.rate}\n" if args.rate else "")
                    + (f"ingest_burst_per_device = {args.burst}\n" if args.burst else ""))
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "gridcast.host.cli", "agent",
                                       "--config", conf, "--token-file",
                                       os.path.join(folder, "token")],
                                      stdout=log, stderr=subprocess.STDOUT)
        client = AgentClient(f"http://127.0.0.1:{port}", timeout_s=5)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/health")["broker"]:
                        break
                except AgentError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not come up in 30 s; see {log_path}")
                time.sleep(0.2)
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            go = time.time() + 3.0  # both processes connected and statuses in
            procs = [ctx.Process(target=devices_process,
                                 args=(broker.port, args.devices, args.hz, args.seconds, go,
                                       out, ca_file)),
                     ctx.Process(target=flooder_process,
                                 args=(broker.port, args.flood_rate, args.seconds, args.qos,
                                       go, out, ca_file, args.leaf))]
            for p in procs:
                p.start()
            time.sleep(max(0.0, go - time.time()))
            r0, d0, t0 = *collector_counts(client), time.monotonic()
            c0 = cpu_s(daemon.pid)
            time.sleep(args.seconds)
            r1, d1, t1 = *collector_counts(client), time.monotonic()
            c1 = cpu_s(daemon.pid)
            time.sleep(1.2)  # the API's device summary is refreshed once a second
            rows = {d["id"]: d for d in client.get("/api/devices")}  # while it floods
            results: dict = {}
            for _ in procs:
                results.update(out.get(timeout=120))
            for p in procs:
                p.join()
            expected = results["sent_per_device"] * args.devices + (
                results["flood_sent"] if args.leaf == "telemetry" else 0)
            # Everything published reaches the collector (QoS 1), stored or dropped, unless
            # the broker threw the flooder out (it says so in its log): until 5 s without news.
            deadline, last, still = time.monotonic() + 300, -1, time.monotonic()
            while time.monotonic() < deadline:
                received = collector_counts(client)[0]
                if received >= expected or time.monotonic() - still > 5:
                    break
                if received != last:
                    last, still = received, time.monotonic()
                time.sleep(0.2)
            drained_s = round(time.monotonic() - t1 - (5 if received < expected else 0), 2)
            after = {d["id"]: d for d in client.get("/api/devices")}.get(FLOODER, {})
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            received, rate_dropped = collector_counts(client)
        finally:
            daemon.terminate()
            daemon.wait(60)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        flood_log = [line.strip() for line in f if f"device {FLOODER}" in line]
    con = sqlite3.connect(db)
    counts = dict(con.execute("SELECT device_id, COUNT(*) FROM telemetry GROUP BY device_id"))
    late_ms = sorted((received_us - device_us) / 1000 for received_us, device_us in con.execute(
        "SELECT received_us, device_us FROM telemetry WHERE device_id != ?", (FLOODER,)))
    con.close()
    sent = results["sent_per_device"]
    stored = {f"dev-{d:03d}": counts.get(f"dev-{d:03d}", 0) for d in range(args.devices)}
    flooder_row = rows.get(FLOODER, {})
    metric = re.search(r'gridcast_ingest_dropped_messages_total\{device="flooder"\} (\S+)',
                       metrics)

    def pct(q: float) -> float | None:
        return round(late_ms[min(len(late_ms) - 1, int(q * len(late_ms)))], 1) if late_ms else None

    report = {
        "limit": "off" if args.no_limit else {"rate_per_s": args.rate or "default",
                                              "burst": args.burst or "default"},
        "broker": broker.url.split("?")[0], "devices": args.devices, "hz": args.hz,
        "seconds": args.seconds, "qos": args.qos,
        "others": {"sent_per_device": sent, "stored_min": min(stored.values()),
                   "stored_max": max(stored.values()),
                   "lost_total": sum(sent - n for n in stored.values()),
                   "received_late_ms": {"p50": pct(0.5), "p99": pct(0.99),
                                        "max": round(late_ms[-1], 1) if late_ms else None}},
        "flooder": {**{k: results[k] for k in ("flood_sent", "flood_s", "flood_rate_achieved")},
                    "leaf": args.leaf, "stored": counts.get(FLOODER, 0),
                    "dropped": after.get("dropped", rate_dropped),
                    "api_throttled": flooder_row.get("throttled"),
                    "api_dropped": flooder_row.get("dropped"),
                    "metric_dropped": float(metric.group(1)) if metric else None,
                    "log_lines": len(flood_log), "first_log_line": flood_log[0] if flood_log
                    else None},
        "ingest_msgs_per_s": round((r1 - r0) / (t1 - t0)),
        "ingest_dropped_per_s": round((d1 - d0) / (t1 - t0)),
        # What the daemon would take on a core of its own: load on a shared machine slows
        # the wall-clock rate, not this.
        "daemon_cpu_s": round(c1 - c0, 2),
        "ingest_msgs_per_daemon_cpu_s": round((r1 - r0) / max(1e-6, c1 - c0)),
        "load_average": os.getloadavg()[0],
        "collector_received": received, "published": expected,
        "drained_after_flood_s": drained_s,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    o, fl = report["others"], report["flooder"]
    print(f"{args.devices} devices at {args.hz:g} Hz for {args.seconds:g} s: {sent} batches "
          f"each sent, {o['stored_min']}..{o['stored_max']} stored, {o['lost_total']} lost; "
          f"received late p50 {o['received_late_ms']['p50']} ms, p99 "
          f"{o['received_late_ms']['p99']} ms.")
    print(f"Flooder: {fl['flood_sent']} messages in {fl['flood_s']} s "
          f"({fl['flood_rate_achieved']}/s), {fl['stored']} stored, {fl['dropped']} dropped; "
          f"API throttled={fl['api_throttled']} dropped={fl['api_dropped']}; "
          f"{fl['log_lines']} log lines.")
    print(f"Ingest {report['ingest_msgs_per_s']} messages/s during the flood "
          f"({report['ingest_dropped_per_s']}/s dropped; "
          f"{report['ingest_msgs_per_daemon_cpu_s']} per CPU second of the daemon, load "
          f"{report['load_average']:.1f}); all in {drained_s} s after it.")


if __name__ == "__main__":
    main()

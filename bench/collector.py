"""Telemetry collector throughput: drift samples per second into SQLite, one vs two processes.

Each collector process is what an agent process has: one MqttConnection (persistent
session, stable client id) and the Collector on it, with its shared subscription.
For each configuration, in one run:
1. start a fresh mosquitto and register the collector(s) (persistent sessions on the
   shared subscription), then take them offline;
2. publish the telemetry of --devices devices (--batches batches each, --samples drift
   samples per batch) while they are offline, so the broker holds it all;
3. start the collector(s), each in its own process, and time how long until every
   batch is in the database; check that no (device, seq) is missing or doubled.

The publisher is out of the timed part, so what is measured is the collectors (decode,
batched transactions, acknowledgements) and the broker delivering to them.

    python bench/collector.py [--devices 100] [--batches 500] [--samples 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def start_collector(store, port: int, name: str, **options):
    """A process's connection and its collector, as the agent wires them."""
    from gridcast.agent.collector import Collector
    from gridcast.agent.mqtt import MqttConnection

    conn = MqttConnection("127.0.0.1", port, client_id=name, clean_session=False)
    collector = Collector(store, conn, **options)
    collector.start()
    conn.start()
    return conn, collector


def collector_process(db: str, port: int, name: str, ready, go, done) -> None:
    from gridcast.agent.store import SqliteStore

    store = SqliteStore(db, timeout_s=30)
    ready.set()
    go.wait()
    conn, c = start_collector(store, port, name, max_batches=20000)
    done.wait()
    c.stop()
    conn.stop()


def register(port: int, names: list[str]) -> None:
    """Connect each collector once so the broker keeps a session (and queue) for it."""
    from gridcast.agent.store import SqliteStore

    for name in names:
        conn, c = start_collector(SqliteStore(":memory:"), port, name)
        c.stop()
        conn.stop()


def publish(port: int, devices: int, batches: int, samples: int) -> int:
    import paho.mqtt.client as mqtt

    from gridcast.protocol import messages, topics

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    drift = list(range(-samples // 2, samples - samples // 2))
    infos = []
    for seq in range(batches):
        for d in range(devices):
            payload = messages.encode("telemetry", seq=seq, device_us=seq, drift_us=drift,
                                      cpu_pct=20, free_mem=60000, boot=d + 1)
            infos.append(client.publish(topics.device_topic(f"bench-{d:03d}", topics.TELEMETRY),
                                        payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return devices * batches * samples


def run_config(n_collectors: int, args: argparse.Namespace, workdir: str) -> dict:
    from gridcast.agent.broker import Mosquitto
    from gridcast.agent.store import SqliteStore

    folder = tempfile.mkdtemp(dir=workdir)
    db = os.path.join(folder, "bench.db")
    SqliteStore(db).close()
    names = [f"bench-collector-{i}" for i in range(n_collectors)]
    per_queue = args.devices * args.batches
    with Mosquitto(folder=os.path.join(folder, "broker"),
                   extra_conf=f"max_queued_messages {per_queue + 1000}\n") as broker:
        register(broker.port, names)
        expected = publish(broker.port, args.devices, args.batches, args.samples)
        ctx = mp.get_context("spawn")
        go, done = ctx.Event(), ctx.Event()
        readies = [ctx.Event() for _ in names]
        procs = [ctx.Process(target=collector_process,
                             args=(db, broker.port, name, r, go, done))
                 for name, r in zip(names, readies, strict=True)]
        for p in procs:
            p.start()
        for r in readies:
            r.wait(60)
        watcher = SqliteStore(db)
        want = args.devices * args.batches
        started = time.monotonic()
        go.set()
        while watcher._execute("SELECT COUNT(*) FROM telemetry")[0][0] < want:
            if time.monotonic() - started > 600:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        watcher.close()
        done.set()
        for p in procs:
            p.join(60)
    store = SqliteStore(db)
    stored = store.sample_count()
    rows = store._execute("SELECT COUNT(*), COUNT(DISTINCT device_id || ':' || seq) "
                          "FROM telemetry")[0]
    missing = 0
    for d in range(args.devices):
        seqs = store.batch_seqs(f"bench-{d:03d}")
        missing += args.batches - len(set(seqs))
    store.close()
    return {"collectors": n_collectors, "samples": stored, "expected": expected,
            "batches": rows[0], "duplicates": rows[0] - rows[1], "missing_batches": missing,
            "samples_per_batch": args.samples, "seconds": round(elapsed, 3),
            "batches_per_s": round(rows[0] / elapsed), "samples_per_s": round(stored / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="gridcast-bench-collector-")
    one = run_config(1, args, workdir)
    two = run_config(2, args, workdir)
    report = {"one": one, "two": two, "scaling": round(two["samples_per_s"] /
                                                       one["samples_per_s"], 3)}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for r in (one, two):
        print(f"{r['collectors']} collector(s): {r['samples']:,} samples ({r['batches']:,} "
              f"batches of {r['samples_per_batch']}) in {r['seconds']:.2f} s = "
              f"{r['samples_per_s']:,} samples/s, {r['batches_per_s']:,} batches/s; "
              f"missing batches {r['missing_batches']}, duplicates {r['duplicates']}")
    print(f"two / one: {report['scaling']:.2f}x")


if __name__ == "__main__":
    main()

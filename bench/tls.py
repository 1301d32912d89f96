"""What TLS costs a device and the agent: handshake, reconnect, memory (issue #17).

    python bench/tls.py [--connects 20] [--restarts 5] [--json]

Against a real mosquitto with a TLS-only listener (a throwaway site CA, P-256 keys,
as `gridcast provision` makes) and a plain one, the firmware's own MQTT client in the
MicroPython unix port (bench/device/tls_client.py):

- connect: TCP (+ TLS handshake) + CONNECT/CONNACK, N times each, median and p90;
- memory per open connection: GC heap (gc.mem_alloc) and resident growth (mbedTLS
  allocates outside the GC heap in this port), TLS minus plain;
- reconnect: the broker is restarted (down 0.5 s) while the device runs its reconnect
  loop; time from the broker's port being open again to the device's next CONNACK,
  and from the drop to the CONNACK;
- one-way delay device -> broker -> agent and back (p10/p50, true clock), which clock
  sync needs alike both ways;
- the agent's side (paho via MqttConnection): connect until ready, TLS and plain.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from gridcast.agent import device_files
from gridcast.agent.broker import Mosquitto
from gridcast.agent.mqtt import MqttConnection
from gridcast.agent.simulation.devices import micropython_binary

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "device", "tls_client.py")


def device(lib: str, broker: Mosquitto, mode: str, n: float) -> list[dict]:
    ca = broker.ca_file or "-"
    done = subprocess.run([micropython_binary(), "-X", "heapsize=256K", CLIENT, "127.0.0.1",
                           str(broker.port), ca, "", "", mode, str(n)],
                          env={**os.environ, "MICROPYPATH": ".frozen:" + lib},
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def connects(lib: str, broker: Mosquitto, n: int) -> dict:
    row = device(lib, broker, "connect", n)[0]
    times = row["connect_ms"][1:]  # the first also loads code and warms caches
    return {"connect_ms_median": round(statistics.median(times), 2),
            "connect_ms_p90": round(pct(times, 90), 2), "first_connect_ms": row["connect_ms"][0],
            "heap_bytes_per_connection": row["heap_bytes"],
            "rss_bytes_per_connection": row["rss_bytes"]}


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.05).close()
        return True
    except OSError:
        return False


def reconnects(lib: str, broker: Mosquitto, restarts: int) -> dict:
    """Restart the broker ``restarts`` times under a running device client."""
    seconds = 3 + restarts * 3.5
    proc = subprocess.Popen([micropython_binary(), "-X", "heapsize=256K", CLIENT, "127.0.0.1",
                             str(broker.port), broker.ca_file or "-", "", "", "run",
                             str(seconds)],
                            env={**os.environ, "MICROPYPATH": ".frozen:" + lib},
                            stdout=subprocess.PIPE, text=True)
    downs, ups = [], []
    time.sleep(2.0)
    for _ in range(restarts):
        downs.append(time.time_ns())
        broker.stop()
        time.sleep(0.5)
        broker.start()
        while not port_open(broker.port):
            time.sleep(0.001)
        ups.append(time.time_ns())
        time.sleep(3.0)
    out, _ = proc.communicate(timeout=seconds + 30)
    connected = [json.loads(line) for line in out.splitlines() if '"connected"' in line]
    after_up, after_down = [], []
    for down, up in zip(downs, ups, strict=True):
        first = next((c["t_ns"] for c in connected if c["t_ns"] > up), None)
        if first is not None:
            after_up.append((first - up) / 1e9)
            after_down.append((first - down) / 1e9)
    return {"restarts": restarts, "reconnected": len(after_up),
            "after_broker_up_s_median": round(statistics.median(after_up), 3),
            "after_broker_up_s_max": round(max(after_up), 3),
            "after_drop_s_median": round(statistics.median(after_down), 3),
            "after_drop_s_max": round(max(after_down), 3)}


def delays(lib: str, broker: Mosquitto, n: int) -> dict:
    """One-way delays (microseconds) between the device and the agent, both ways."""
    ups: list[float] = []
    conn = MqttConnection.from_url(broker.url)
    conn.subscribe("bench/up", qos=0,
                   handler=lambda m: ups.append((time.time_ns() - int(m.payload)) / 1000))
    conn.start()
    stop = threading.Event()

    def send_down() -> None:
        while not stop.wait(0.05):
            conn.publish("bench/down", str(time.time_ns()).encode(), 0)

    sender = threading.Thread(target=send_down, daemon=True)
    sender.start()
    try:
        downs = device(lib, broker, "delay", n)[-1]["down_us"]
    finally:
        stop.set()
        sender.join()
        conn.stop()
    return {"up_us_p10": round(pct(ups, 10)), "up_us_p50": round(pct(ups, 50)),
            "down_us_p10": round(pct(downs, 10)), "down_us_p50": round(pct(downs, 50))}


def agent_connects(broker: Mosquitto, n: int) -> dict:
    times = []
    for _ in range(n):
        conn = MqttConnection.from_url(broker.url)
        conn.subscribe("gridcast/v1/dev/+/status", handler=lambda m: None)
        t0 = time.perf_counter()
        conn.start()
        times.append((time.perf_counter() - t0) * 1000)
        conn.stop()
    return {"agent_connect_ms_median": round(statistics.median(times[1:]), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connects", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200, help="each way, for the delays")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridcast-bench-tls-") as folder:
        lib = device_files.write_library(os.path.join(folder, "lib"), "sim")
        result: dict = {}
        with Mosquitto(folder=os.path.join(folder, "plain"), persistence=False) as plain, \
                Mosquitto(folder=os.path.join(folder, "tls"), persistence=False,
                          tls=True) as tls:
            result["plain"] = (connects(lib, plain, args.connects) | agent_connects(plain, 6)
                               | delays(lib, plain, args.messages))
            result["tls"] = (connects(lib, tls, args.connects) | agent_connects(tls, 6)
                             | delays(lib, tls, args.messages))
            result["tls_adds"] = {
                "heap_bytes": result["tls"]["heap_bytes_per_connection"]
                - result["plain"]["heap_bytes_per_connection"],
                "rss_bytes": result["tls"]["rss_bytes_per_connection"]
                - result["plain"]["rss_bytes_per_connection"]}
            result["tls_reconnect"] = reconnects(lib, tls, args.restarts)
            result["plain_reconnect"] = reconnects(lib, plain, args.restarts)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for part in ("plain", "tls"):
            r = result[part]
            print(f"{part:5s}: device connect median {r['connect_ms_median']} ms (p90 "
                  f"{r['connect_ms_p90']}), per connection heap {r['heap_bytes_per_connection']} "
                  f"B, resident {r['rss_bytes_per_connection']} B; agent connect median "
                  f"{r['agent_connect_ms_median']} ms; one-way delay p10/p50 up "
                  f"{r['up_us_p10']}/{r['up_us_p50']} us, down {r['down_us_p10']}/"
                  f"{r['down_us_p50']} us")
        print(f"TLS adds per connection: heap {result['tls_adds']['heap_bytes']} B, resident "
              f"{result['tls_adds']['rss_bytes']} B")
        for part in ("tls_reconnect", "plain_reconnect"):
            r = result[part]
            print(f"{part}: {r['reconnected']}/{r['restarts']} reconnected; after the broker "
                  f"was back: median {r['after_broker_up_s_median']} s, max "
                  f"{r['after_broker_up_s_max']} s; after the drop: median "
                  f"{r['after_drop_s_median']} s, max {r['after_drop_s_max']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Device side of bench/tls.py (MicroPython unix port): the firmware's MQTT client over TLS.

    micropython tls_client.py HOST PORT CA_FILE|- USER PASSWORD MODE N

MODE ``connect``: N connections opened one after another (each timed from the TCP
connect to the CONNACK) and held open together, then the memory per connection.
CA_FILE ``-`` connects in plain TCP.
MODE ``delay``: N messages each way, 50 ms apart, stamped with the true time
(time_ns): up to ``bench/up`` (the host times their arrival), and the host's on
``bench/down`` timed here: one-way delays, which clock sync needs alike both ways.
MODE ``run``: connect and stay connected (the client's own reconnect loop) for N
seconds, printing a line at every (re)connect with the true time (time_ns) so the
host can time reconnects after it restarts the broker.
Prints one JSON object per line. Memory per open connection: ``heap_bytes`` on the
GC heap (gc.mem_alloc), ``rss_bytes`` the process's resident growth (mbedTLS's
buffers are malloc'ed outside the GC heap in this port, as from the IDF heap on an
ESP32).
"""

import asyncio
import gc
import json
import sys
import time

from gridcast.firmware.mqtt_client import MqttClient, tls_context


def make_client(host, port, ca_file, user, password, log):
    tls = None
    if ca_file != "-":
        with open(ca_file) as f:
            tls = tls_context(f.read())
    return MqttClient("bench-%d" % time.ticks_us(), host, port, keepalive_s=30,
                      username=user, password=password, tls=tls, log=log)


def rss_bytes():
    """Resident memory of this process: in the unix port mbedTLS allocates with malloc,
    outside the GC heap (on an ESP32 from the IDF heap), so gc.mem_alloc misses it."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def connect_mode(args, n):
    """n connections opened one after another and held together: the time of each, and
    the memory per open connection (growth over all n, divided by n)."""
    clients = [make_client(*args, log=None) for _ in range(n)]
    times_ms = [0.0] * n
    gc.collect()
    before, rss_before = gc.mem_alloc(), rss_bytes()
    for i in range(n):
        t0 = time.ticks_us()
        await clients[i]._connect_once()
        times_ms[i] = time.ticks_diff(time.ticks_us(), t0) / 1000
    gc.collect()
    heap_each = (gc.mem_alloc() - before) // n
    rss_each = (rss_bytes() - rss_before) // n
    for client in clients:
        await client.disconnect()
    print(json.dumps({"mode": "connect", "connect_ms": times_ms, "heap_bytes": heap_each,
                      "rss_bytes": rss_each}))


async def delay_mode(args, n):
    downs = []

    async def on_message(topic, payload):
        downs.append((time.time_ns() - int(payload)) / 1000)

    client = make_client(*args, log=None)
    client.on_message = on_message
    client.subscriptions.append(("bench/down", 0))
    task = asyncio.create_task(client.run())
    await asyncio.sleep(1)
    for _ in range(n):
        await client.publish("bench/up", str(time.time_ns()).encode(), 0)
        await asyncio.sleep_ms(50)
    await asyncio.sleep(0.5)
    task.cancel()
    print(json.dumps({"mode": "delay", "down_us": downs}))


async def run_mode(args, seconds):
    def log(text):
        print(json.dumps({"log": text, "t_ns": time.time_ns()}))

    client = make_client(*args, log=log)

    async def on_connect():
        print(json.dumps({"connected": client.reconnects, "t_ns": time.time_ns(),
                          "handshake_ms": client.handshake_ms}))

    client.on_connect = on_connect
    task = asyncio.create_task(client.run())
    await asyncio.sleep(seconds)
    task.cancel()


def main():
    host, port, ca_file, user, password, mode, n = sys.argv[1:8]
    args = (host, int(port), ca_file, user, password)
    if mode == "connect":
        asyncio.run(connect_mode(args, int(n)))
    elif mode == "delay":
        asyncio.run(delay_mode(args, int(n)))
    else:
        asyncio.run(run_mode(args, float(n)))


main()

"""Logins through mosquitto's dynamic-security plugin: what adding a device costs, and how a
fleet comes back after a broker restart (docs/security.md, client-id takeover).

    python bench/dynsec.py [--devices 20] [--adds 10] [--filler 1000] [--json]

A provisioned TLS site (``gridcast provision --broker``: site CA, the plugin's file,
``mosquitto -c DIR/mosquitto.conf``, dropping to mosquitto's user when run as root):

- add: ``Provisioner.provision`` of a new device while the broker runs (the admin
  login's ``$CONTROL`` commands), then that device's first login with its own id (TLS,
  CONNACK, SUBACK); median and max of ``--adds``. Repeated with ``--filler`` more logins
  in the file (the plugin rewrites its whole file after every command);
- restart: ``--devices`` simulated devices (the real firmware, MicroPython unix port)
  online over TLS; the broker is stopped and started again; the time from its port
  being open again to each device's next hello (a live, not retained, message).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from gridcast.agent import dynsec
from gridcast.agent.broker import free_port, mosquitto_binary
from gridcast.agent.mqtt import MqttConnection
from gridcast.agent.provisioning import Provisioner
from gridcast.agent.simulation.devices import Simulator
from gridcast.protocol import topics

KEY = b"b" * 32


class Site:
    def __init__(self, root: str, devices: int) -> None:
        self.dir = os.path.join(root, "mosq")
        self.port = free_port()
        self.prov = Provisioner(self.dir)
        self.agent = self.prov.provision("gridcast-agent", role="agent",
                                         broker=f"127.0.0.1:{self.port}")
        self.out = os.path.join(root, "out")
        self.devices = {f"dev-{i + 1:02d}": self.prov.provision(f"dev-{i + 1:02d}", key=KEY,
                                                                config_dir=self.out)
                        for i in range(devices)}
        self.proc: subprocess.Popen | None = None

    def add_filler(self, n: int) -> None:
        """``n`` more device logins written straight into the file (broker stopped)."""
        doc = dynsec.Document.load(self.prov.dynsec_path)
        fields = dynsec.password_fields("filler")
        for i in range(n):
            doc.set_user(f"filler-{i:04d}", "device", fields)
        self.prov._save(doc)

    def start(self) -> float:
        """Start the broker; the monotonic time its port opened."""
        binary = mosquitto_binary()
        assert binary is not None
        self.proc = subprocess.Popen([binary, "-c", self.prov.conf_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            assert self.proc.poll() is None, "mosquitto refused the provisioned config"
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return time.monotonic()
            except OSError:
                time.sleep(0.005)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def login_s(site: Site, user: str, password: str) -> float:
    t0 = time.monotonic()
    conn = MqttConnection.from_url(site.prov.agent_url() or "", username=user,
                                   password=password, client_id=user)
    conn.subscribe(topics.device_topic(user, topics.CMD), handler=lambda m: None)
    conn.start(timeout_s=5)
    conn.stop()
    return time.monotonic() - t0


def adds(site: Site, n: int, tag: str) -> dict:
    provision, first_login = [], []
    for i in range(n):
        t0 = time.monotonic()
        done = site.prov.provision(f"{tag}-{i:02d}", key=KEY)
        provision.append(time.monotonic() - t0)
        assert done.live, done.notes
        first_login.append(login_s(site, done.user, done.password))
    return {"provision_ms_median": round(statistics.median(provision) * 1000, 1),
            "provision_ms_max": round(max(provision) * 1000, 1),
            "first_login_ms_median": round(statistics.median(first_login) * 1000, 1),
            "first_login_ms_max": round(max(first_login) * 1000, 1)}


def restart(site: Site) -> dict:
    configs = {}
    for user in site.devices:
        with open(os.path.join(site.out, f"{user}.config.json")) as f:
            configs[user] = f.read()
    sim = Simulator(len(site.devices), f"127.0.0.1:{site.port}", KEY,
                    os.path.join(os.path.dirname(site.dir), "sim"), prefix="dev",
                    ca_pem=site.prov.ca.pem)
    for dev in sim.devices:
        dev.config_text = configs[dev.id]
    hellos: dict[str, float] = {}
    lock = threading.Lock()
    everyone = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.retain:  # kept from before the restart: not a new login
            return
        parsed = topics.parse_device_topic(msg.topic)
        with lock:
            if parsed and parsed[0] not in hellos:
                hellos[parsed[0]] = time.monotonic()
            if len(hellos) == len(site.devices):
                everyone.set()

    def watch() -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch")
        client.tls_set(ca_certs=site.prov.ca.cert_path)
        client.username_pw_set("gridcast-agent", site.agent.password)
        client.on_message = on_message
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"{topics.PREFIX}/dev/+/{topics.HELLO}", 1)
        client.connect("127.0.0.1", site.port)
        client.loop_start()
        return client

    watcher = watch()
    sim.start()
    try:
        assert everyone.wait(60), f"only {sorted(hellos)} came online"
        watcher.loop_stop()
        watcher.disconnect()
        site.stop()
        time.sleep(0.5)
        with lock:
            hellos.clear()
            everyone.clear()
        opened = site.start()
        watcher = watch()
        assert everyone.wait(60), f"only {sorted(hellos)} came back"
        back = sorted(t - opened for t in hellos.values())
        return {"devices": len(back), "back_s_median": round(statistics.median(back), 2),
                "back_s_max": round(back[-1], 2)}
    finally:
        watcher.loop_stop()
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--adds", type=int, default=10)
    parser.add_argument("--filler", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="gridcast-bench-dynsec-")
    os.chmod(root, 0o755)  # mosquitto, started as root, drops to its own user
    site = Site(root, args.devices)
    result: dict = {"fleet": args.devices}
    try:
        site.start()
        result["add"] = adds(site, args.adds, "new")
        result["restart"] = restart(site)
        site.stop()
        site.add_filler(args.filler)
        site.start()
        result[f"add_with_{args.filler}_more"] = adds(site, args.adds, "late")
    finally:
        site.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

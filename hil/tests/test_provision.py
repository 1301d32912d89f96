"""Provisioned devices on a broker that enforces passwords and ACLs: the real firmware
logs in with its credentials, and no device can act outside its own topics."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from gridcast.agent import deploy
from gridcast.agent.broker import Mosquitto
from gridcast.agent.command_signer import CommandSigner
from gridcast.agent.provisioning import Provisioner
from gridcast.agent.simulation.devices import Simulator
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.scenario_helpers import run
from gridcast.protocol import messages, topics

pytestmark = pytest.mark.sim_only


def login(port: int, user: str | None, password: str | None, client_id: str = ""):
    """(client, CONNACK reason) for a paho client logging in (a device's login only with
    its own id as ``client_id``)."""
    result: dict = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"t-{user}-{time.time()}")
    if user:
        client.username_pw_set(user, password)

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(5)
    return client, result["rc"]


def test_provisioned_fleet_is_fenced_into_its_own_topics(tmp_path, key):
    prov = Provisioner(str(tmp_path / "mosq"))
    key_file = tmp_path / "site.key"
    key_file.write_bytes(key)
    agent = prov.provision("gridcast-agent", role="agent")
    devices = {d: prov.provision(d, key=key, broker="", config_dir=str(tmp_path / "cfg"))
               for d in ("sec-01", "sec-02", "sec-03")}
    logins = (tmp_path / "mosq" / "dynsec" / "dynamic-security.json").read_text()
    assert json.loads(logins)["clients"][-1]["clientid"] == "sec-03"
    assert agent.password not in logins  # hashed
    with Mosquitto(folder=str(tmp_path / "broker"), anonymous=False,
                   extra_conf=prov.mosquitto_conf(anonymous_line=False)) as broker:
        # anonymous and wrong passwords are refused
        _, rc = login(broker.port, None, None)
        assert rc.is_failure
        _, rc = login(broker.port, "sec-01", "wrong")
        assert rc.is_failure
        sim = Simulator(2, f"127.0.0.1:{broker.port}", key, str(tmp_path / "sim"),
                        prefix="sec")
        for dev in sim.devices:
            path = devices[dev.id].config_path
            assert path is not None
            with open(path) as f:
                cfg = json.load(f)
            cfg["broker"] = f"127.0.0.1:{broker.port}"
            dev.config_text = json.dumps(cfg)
        sim.start()
        try:
            # the agent's own user watches everything, and sees what reaches sec-02
            watcher, rc = login(broker.port, "gridcast-agent", agent.password)
            assert not rc.is_failure
            seen: list[tuple[str, bytes]] = []
            watcher.on_message = lambda c, u, m: seen.append((m.topic, bytes(m.payload)))
            watcher.subscribe(f"{topics.PREFIX}/#", 1)

            async def scenario():
                async with open_transport(broker.url, username="gridcast-agent",
                                          password=agent.password,
                                          signer=CommandSigner(key)) as t:
                    await t.wait_online(["sec-01", "sec-02"], timeout_s=30)
                    results = await deploy.deploy(t, ["sec-01", "sec-02"],
                                                  make_bundle(key, 0.3, track="sec"), "sec", 1)
                    assert all(r.ok for r in results), [r.error for r in results]

            run(scenario())
            # sec-03's login (its device is not running; a login takes only its own client
            # id) tries to speak for sec-02 and to command it: the broker drops both
            rogue, rc = login(broker.port, "sec-03", devices["sec-03"].password, "sec-03")
            assert not rc.is_failure
            forged = messages.encode("telemetry", seq=999, drift_us=[123456], boot=5)
            stop = messages.encode("stop", at_us=0)
            for topic, payload in ((topics.device_topic("sec-02", topics.TELEMETRY), forged),
                                   (topics.device_topic("sec-02", topics.CMD), stop),
                                   (topics.device_topic("sec-03", topics.TELEMETRY), forged)):
                rogue.publish(topic, payload, qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                    t == topics.device_topic("sec-03", topics.TELEMETRY) and p == forged
                    for t, p in seen):
                time.sleep(0.05)
            own = [t for t, p in seen if p == forged]
            assert own == [topics.device_topic("sec-03", topics.TELEMETRY)]  # only its own
            assert not any(t == topics.device_topic("sec-02", topics.CMD) and p == stop
                           for t, p in seen)
        finally:
            sim.stop()


def test_the_daemon_says_when_the_broker_refuses_its_credentials(tmp_path, caplog):
    from gridcast.agent import config as agent_config
    from gridcast.agent.broker import free_port
    from tests.test_agent_api import Daemon, request

    prov = Provisioner(str(tmp_path / "mosq"))
    agent = prov.provision("gridcast-agent", role="agent")
    with Mosquitto(folder=str(tmp_path / "broker"), anonymous=False,
                   extra_conf=prov.mosquitto_conf(anonymous_line=False)) as broker:
        cfg = agent_config.AgentConfig(broker=broker.url, broker_username="gridcast-agent",
                                       broker_password=agent.password + "x",
                                       database=f"sqlite://{tmp_path}/a.db",
                                       port=free_port()).check()
        with Daemon(cfg, str(tmp_path / "token")) as d:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "refused" not in caplog.text:
                time.sleep(0.1)
            status, health = request(d.url + "/health")
            assert status == 503 and health["broker"] is False
            assert request(d.url + "/api/devices") == (200, [])  # still serving
        assert "refused" in caplog.text
        good = agent_config.AgentConfig(broker=broker.url, broker_username="gridcast-agent",
                                        broker_password=agent.password,
                                        database=f"sqlite://{tmp_path}/b.db",
                                        port=free_port()).check()
        with Daemon(good, str(tmp_path / "token2")) as d:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and request(d.url + "/health")[0] != 200:
                time.sleep(0.1)
            assert request(d.url + "/health")[1]["broker"] is True

"""TLS on a provisioned site: the broker runs the mosquitto.conf `gridcast provision` wrote, as
it is; it refuses plain text, other CAs and wrong passwords; the agent's connection and the
real firmware (MicroPython unix port) say precisely why a handshake failed."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from gridcast.agent import broker_log
from gridcast.agent.broker import Mosquitto, free_port, mosquitto_binary
from gridcast.agent.config import AgentConfig
from gridcast.agent.mqtt import MqttConnection, MqttError
from gridcast.agent.provisioning import Provisioner
from gridcast.agent.simulation.devices import Simulator
from gridcast.agent.site_ca import SiteCA
from gridcast.agent.transport_mqtt import MqttTransport

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto")
KEY = b"k" * 32


class Site:
    """A provisioned site in a folder mosquitto's own user can read, its broker started
    with ``mosquitto -c DIR/mosquitto.conf`` and nothing else."""

    def __init__(self, client_cert: bool = False) -> None:
        self.root = tempfile.mkdtemp(prefix="gridcast-tls-")
        os.chmod(self.root, 0o755)  # mosquitto drops to its own user when started as root
        self.dir = os.path.join(self.root, "mosq")
        self.port = free_port()
        self.prov = Provisioner(self.dir)
        self.agent = self.prov.provision("gridcast-agent", role="agent",
                                         broker=f"127.0.0.1:{self.port}", client_cert=client_cert)
        self.device = self.prov.provision("tls-01", key=KEY, config_dir=os.path.join(
            self.root, "out"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        assert binary is not None
        self.proc = subprocess.Popen([binary, "-c", os.path.join(self.dir, "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "mosquitto refused the provisioned config"
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the provisioned broker did not open its port")

    def connect(self, url: str | None = None, password: str | None = None) -> MqttConnection:
        conn = MqttConnection.from_url(url or self.prov.agent_url() or "",
                                       username="gridcast-agent",
                                       password=self.agent.password if password is None
                                       else password)
        conn.subscribe("gridcast/v1/dev/+/status", handler=lambda m: None)
        conn.start(timeout_s=3)
        return conn

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def site():
    s = Site()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> SiteCA:
    ca = SiteCA(str(tmp_path_factory.mktemp("other-ca")))
    ca.ensure()
    return ca


def test_provisioned_broker_refuses_plain_text_other_cas_and_wrong_passwords(site, other_ca):
    site.connect().stop()  # the agent's URL and password work
    with pytest.raises(MqttError, match=r"closed the connection before answering.*mqtts://"):
        site.connect(f"mqtt://127.0.0.1:{site.port}")
    with pytest.raises(MqttError, match=f"TLS: the broker at mqtts://127.0.0.1:{site.port} "
                                        "presented a certificate .* not signed by the CA"):
        site.connect(f"mqtts://127.0.0.1:{site.port}?ca={other_ca.cert_path}")
    with pytest.raises(MqttError, match="refused the connection: Not authorized"):
        site.connect(password="wrong-password")
    with pytest.raises(MqttError, match=r"(Hostname|IP address) mismatch.*names"):
        site.connect(f"mqtts://127.0.0.2:{site.port}?ca={site.prov.ca.cert_path}")


def test_broker_requiring_client_certificates_refuses_another_cas(other_ca, tmp_path):
    site = Site(client_cert=True)
    site.start()
    try:
        site.connect().stop()  # the agent URL carries its certificate
        ca = site.prov.ca.cert_path
        foreign = other_ca.issue("intruder", str(tmp_path / "i.crt"), str(tmp_path / "i.key"))
        for url in (f"mqtts://127.0.0.1:{site.port}?ca={ca}",  # no certificate at all
                    f"mqtts://127.0.0.1:{site.port}?ca={ca}&cert={foreign.cert_path}"
                    f"&key={foreign.key_path}"):
            with pytest.raises(MqttError, match=r"TLS: the broker at .* refused the handshake"):
                site.connect(url)
    finally:
        site.stop()


def _device_log(sim: Simulator, text: str, timeout_s: float = 8.0) -> str:
    path = os.path.join(sim.devices[0].folder, "device.log")
    deadline = time.monotonic() + timeout_s
    log = ""
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            log = f.read()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the device log:\n{log}")


def test_firmware_connects_over_tls_and_logs_why_a_bad_ca_fails(site, other_ca, tmp_path,
                                                               caplog):
    """The real firmware with the provisioned config comes online over TLS; with another CA
    it logs the reason, keeps running and keeps retrying; the agent's log says it too, from
    the broker's log (the device never reaches the agent)."""
    good = Simulator(1, "", KEY, str(tmp_path / "good"), prefix="tls")
    assert site.device.config_path is not None
    with open(site.device.config_path) as f:
        good.devices[0].config_text = f.read()
    bad = Simulator(1, "", KEY, str(tmp_path / "bad"), prefix="tls")
    bad.devices[0].config_text = json.dumps(
        json.loads(good.devices[0].config_text) | {"ca_pem": other_ca.pem})
    conn = site.connect()
    transport = MqttTransport(conn)
    cfg = AgentConfig(broker=site.prov.agent_url() or "")
    log_path = broker_log.path_for(cfg)  # found beside the site CA
    assert log_path is not None
    watcher = broker_log.BrokerLogWatcher(log_path, poll_s=0.05).start()
    try:
        good.start()
        bad.start()

        async def online() -> None:
            async with transport:
                await transport.wait_online(["tls-01"], timeout_s=10)

        asyncio.run(online())
        log = _device_log(bad, "retrying")
        assert ("TLS: the broker's certificate was rejected: The certificate is not correctly "
                "signed by the trusted CA") in log
        assert bad.devices[0].alive  # no brick: it runs on and retries
        deadline = time.monotonic() + 5
        while not watcher.reported and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.reported == [
            "broker: the client at 127.0.0.1 rejected the broker's certificate: not signed by "
            "the CA it trusts; its ca_pem is not this site's CA; re-provision it (gridcast "
            "provision) and flash it"]
        assert watcher.reported[0] in caplog.text
    finally:
        watcher.stop()
        good.stop()
        bad.stop()
        conn.stop()


def test_expired_broker_certificate_is_named_by_agent_and_device(tmp_path):
    broker = Mosquitto(folder=str(tmp_path / "broker"), tls=True)
    ca = SiteCA(str(tmp_path / "broker" / "tls"))
    ca.issue("expired", broker.folder + "/broker.crt", broker.folder + "/broker.key",
             server_names=("127.0.0.1", "localhost"),
             not_after=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
    with broker:
        with pytest.raises(MqttError, match="certificate has expired; renew it"):
            MqttConnection.from_url(broker.url).start(timeout_s=3)
        sim = Simulator(1, broker.url, KEY, str(tmp_path / "sim"), prefix="exp")
        sim.start()
        try:
            _device_log(sim, "The certificate validity has expired")
            assert sim.devices[0].alive
        finally:
            sim.stop()


def test_api_beyond_localhost_serves_https_with_the_site_certificate(site, tmp_path,
                                                                      monkeypatch):
    from gridcast.agent import config as agent_config
    from gridcast.agent.client import AgentClient, AgentError
    from tests.test_agent_api import TOKEN, Daemon

    with pytest.raises(agent_config.ConfigError, match="not localhost: the API needs HTTPS"):
        agent_config.AgentConfig(bind="0.0.0.0", token=TOKEN).check()
    cfg = agent_config.AgentConfig(
        broker=site.prov.agent_url() or "", broker_username="gridcast-agent",
        broker_password=site.agent.password, database=f"sqlite://{tmp_path}/a.db",
        bind="0.0.0.0", port=free_port(), token=TOKEN).check()  # api.crt found beside ca.crt
    monkeypatch.setenv("SSL_CERT_FILE", site.prov.ca.cert_path)  # how the CLI trusts the CA
    with Daemon(cfg, str(tmp_path / "token")):
        answer = AgentClient(f"https://127.0.0.1:{cfg.port}", TOKEN).request("/api/devices")
        assert answer.status == 200
        with pytest.raises(AgentError):  # no plain HTTP on the same port
            AgentClient(f"http://127.0.0.1:{cfg.port}", TOKEN).request("/api/devices")


def test_a_device_whose_broker_turns_untrusted_keeps_its_show(tmp_path, other_ca):
    """Mid-show the broker comes back with a certificate from another CA: the device logs
    why it cannot reconnect, and its LEDs keep the beat (the show does not need the broker)."""
    from gridcast.agent import deploy, playback
    from gridcast.agent.command_signer import CommandSigner
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport
    from gridcast.hil.bundles import make_bundle

    broker = Mosquitto(folder=str(tmp_path / "broker"), tls=True)
    sim = Simulator(1, broker.url, KEY, str(tmp_path / "sim"), prefix="show")
    dev = sim.devices[0]

    def beats_shown() -> int:
        if not os.path.exists(dev.led_log):
            return 0
        with open(dev.led_log) as f:
            return sum(1 for _ in f)

    async def show() -> None:
        async with open_transport(broker.url, signer=CommandSigner(KEY)) as t:
            responder = SyncResponder(t)  # the device plays on the agent's clock
            responder.start()
            await t.wait_online([dev.id], timeout_s=10)
            results = await deploy.deploy(t, [dev.id], make_bundle(KEY, 0.5), "hil-song", 1)
            assert all(r.ok for r in results), [r.error for r in results]
            await playback.play(t, [dev.id], "hil-song", lead_s=1.0)
            deadline = time.monotonic() + 8
            while beats_shown() < 2:
                assert time.monotonic() < deadline, "the show did not start"
                await asyncio.sleep(0.05)
            await responder.stop()

    with broker:
        sim.start()
        try:
            asyncio.run(show())
            broker.stop()
            other_ca.issue("impostor", broker.folder + "/broker.crt", broker.folder + "/broker.key",
                           server_names=("127.0.0.1", "localhost"))
            broker.start()
            _device_log(sim, "not correctly signed by the trusted CA")
            before = beats_shown()
            time.sleep(1.5)  # 128 BPM: about three beats
            assert beats_shown() >= before + 2
            assert dev.alive
        finally:
            sim.stop()

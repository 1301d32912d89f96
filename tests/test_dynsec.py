"""Logins through mosquitto's dynamic-security plugin (agent/dynsec.py): a device added to a
running broker at once and bound to its own client id, kept across a restart; a site with a
password file migrated with its passwords; what a user can get wrong, in one line each."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from gridcast.agent import dynsec
from gridcast.agent.broker import Mosquitto, mosquitto_binary
from gridcast.agent.mqtt import MqttConnection, MqttError
from gridcast.agent.provisioning import Provisioner, ProvisionError
from gridcast.protocol import topics

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto")
KEY = b"k" * 32


def _login(url: str, user: str, password: str, client_id: str) -> MqttConnection:
    conn = MqttConnection.from_url(url, username=user, password=password, client_id=client_id)
    conn.subscribe(topics.device_topic(user, topics.CMD), handler=lambda m: None)
    conn.start(timeout_s=3)
    return conn


def test_a_device_added_to_the_running_broker_logs_in_at_once_bound_to_its_id():
    from tests.test_tls import Site

    site = Site()
    site.start()
    try:
        url = site.prov.agent_url() or ""
        agent = site.connect()  # stays connected: adding a device disconnects nobody
        first = _login(url, "tls-01", site.device.password, "tls-01")
        t0 = time.monotonic()
        added = site.prov.provision("tls-03", key=KEY)
        took_s = time.monotonic() - t0
        assert added.live and added.notes == [] and took_s < 3.0, (took_s, added.notes)
        _login(url, "tls-03", added.password, "tls-03").stop()
        with pytest.raises(MqttError, match="Not authorized"):
            _login(url, "tls-03", added.password, "tls-01")  # another device's id
        assert agent.connected and agent.connects == 1 and first.connected and \
            first.connects == 1
        first.stop()
        agent.stop()
        # the plugin saved it: a restarted broker still knows the device
        assert site.proc is not None
        site.proc.terminate()
        site.proc.wait(5)
        site.start()
        _login(url, "tls-03", added.password, "tls-03").stop()
        again = site.prov.provision("tls-03", key=KEY)  # re-provisioning rotates, live too
        assert again.live
        with pytest.raises(MqttError, match="Not authorized"):
            _login(url, "tls-03", added.password, "tls-03")
        _login(url, "tls-03", again.password, "tls-03").stop()
    finally:
        site.stop()


def test_a_stopped_or_foreign_broker_at_the_address_gets_the_file_and_one_warning():
    from tests.test_tls import Site

    site = Site()
    try:
        quiet = site.prov.provision("tls-04", key=KEY)  # nothing listens: the file, silently
        assert not quiet.live and quiet.notes == []
        with Mosquitto(port=site.port):  # plain, anonymous: not this site's broker
            foreign = site.prov.provision("tls-05", key=KEY)
        assert not foreign.live and len(foreign.notes) == 1
        assert "did not take the admin login gridcast-admin" in foreign.notes[0]
        assert "restart it now (mosquitto -c" in foreign.notes[0]
        site.start()  # this site's broker reads both from its file
        url = site.prov.agent_url() or ""
        for done in (quiet, foreign):
            _login(url, done.user, done.password, done.user).stop()
    finally:
        site.stop()


def _legacy_site(folder) -> dict[str, str]:
    """A site as gridcast provision wrote it before the plugin: passwd, acl, provisioning.json.
    Returns the passwords."""
    folder.mkdir()
    passwords = {"old-1": "pw-old-1", "gridcast-agent": "pw-agent"}
    for i, (user, password) in enumerate(passwords.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b",
                        str(folder / "passwd"), user, password], check=True)
    with open(folder / "passwd", "a") as f:  # a mosquitto 1.x hash: cannot be converted
        f.write("ancient:$6$c2FsdA==$aGFzaA==\n")
    (folder / "acl").write_text("user old-1\ntopic write gridcast/v1/dev/old-1/status\n")
    (folder / "provisioning.json").write_text(json.dumps(
        {"old-1": {"role": "device"}, "gridcast-agent": {"role": "agent"},
         "ancient": {"role": "device"}}))
    return passwords


def test_a_site_with_a_password_file_is_migrated_with_its_passwords(tmp_path):
    passwords = _legacy_site(tmp_path / "mosq")
    prov = Provisioner(str(tmp_path / "mosq"))
    new = prov.provision("new-1", key=KEY)
    assert "migrated 2 users" in new.notes[0] and "Restart mosquitto once" in new.notes[0]
    assert "ancient" in new.notes[1] and "provision them again" in new.notes[1]
    with Mosquitto(folder=str(tmp_path / "broker"), anonymous=False,
                   extra_conf=prov.mosquitto_conf(anonymous_line=False)) as broker:
        _login(broker.url, "old-1", passwords["old-1"], "old-1").stop()  # same password
        _login(broker.url, "new-1", new.password, "new-1").stop()
        with pytest.raises(MqttError, match="Not authorized"):
            _login(broker.url, "old-1", passwords["old-1"], "new-1")
        agent = MqttConnection.from_url(broker.url, username="gridcast-agent",
                                        password=passwords["gridcast-agent"])
        agent.subscribe(topics.SHARED_TELEMETRY, handler=lambda m: None)
        agent.start(timeout_s=3)  # any client id, and the collectors' shared subscription
        agent.stop()


def test_what_a_user_can_get_wrong_is_one_line(tmp_path, monkeypatch):
    prov = Provisioner(str(tmp_path / "mosq"))
    prov.provision("gridcast-agent", role="agent")
    with pytest.raises(ProvisionError, match=r"device id 'gridcast-agent' is already "
                                             r"provisioned as the agent in .*provisioning.json"):
        prov.provision("gridcast-agent", key=KEY)
    with pytest.raises(ProvisionError, match="'gridcast-admin' is the broker's admin user"):
        prov.provision("gridcast-admin", key=KEY)
    with open(prov.dynsec_path) as f:
        doc = json.load(f)
    doc["clients"].append({"username": "desk", "clientid": "stage-7"})  # made by hand
    with open(prov.dynsec_path, "w") as f:
        json.dump(doc, f)
    with pytest.raises(ProvisionError, match=r"'stage-7' is already a login .* not made by "
                                             r"gridcast provision.*deleteClient desk"):
        prov.provision("stage-7", key=KEY)
    with open(prov.dynsec_path, "w") as f:
        f.write("{half")
    with pytest.raises(dynsec.DynsecError, match=r"dynamic-security.json: unreadable .*restore"):
        prov.provision("stage-8", key=KEY)
    monkeypatch.setenv("GRIDCAST_DYNSEC_PLUGIN", str(tmp_path / "none.so"))
    with pytest.raises(dynsec.DynsecError, match=r"none\.so: no such file; point it at "
                                                 r"mosquitto_dynamic_security\.so"):
        prov.provision("stage-8", key=KEY)
    monkeypatch.delenv("GRIDCAST_DYNSEC_PLUGIN")
    blocked = Provisioner(str(tmp_path / "blocked"))
    os.makedirs(blocked.folder)
    with open(blocked.dynsec_dir, "w") as f:
        f.write("in the way")
    with pytest.raises(ProvisionError, match=r"cannot make .*/dynsec .*remove what is in the way"):
        blocked.provision("stage-9", key=KEY)
    monkeypatch.setattr(dynsec, "PLUGIN_GLOBS", ())
    with pytest.raises(dynsec.DynsecError, match=r"plugin .* is not installed .*apt-get install "
                                                 r"mosquitto"):
        prov.provision("stage-8", key=KEY)

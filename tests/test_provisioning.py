"""gridcast provision: logins in the dynamic-security plugin's file, ACLs and device config
(hil/tests/test_provision.py checks that a real mosquitto enforces them against the real firmware;
tests/test_tls.py and tests/test_rate_limit.py the client-id binding and adding a device live)."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from gridcast.agent import dynsec
from gridcast.agent.provisioning import Provisioner, ProvisionError
from gridcast.firmware import config as device_config
from gridcast.host import cli
from gridcast.protocol import keys
from gridcast.protocol.errors import ProtocolError


def test_device_acl_allows_only_its_own_topics():
    acls = {(a["acltype"], a["topic"]) for a in dynsec.device_acls("stage-1") if a["allow"]}
    assert ("publishClientSend", "gridcast/v1/dev/stage-1/telemetry") in acls
    assert ("subscribeLiteral", "gridcast/v1/dev/stage-1/cmd") in acls
    assert ("publishClientReceive", "gridcast/v1/dev/stage-1/cmd") in acls
    assert ("subscribeLiteral", "gridcast/v1/all/cmd") in acls
    assert not any(t.endswith("/cmd") for kind, t in acls if kind == "publishClientSend")
    assert not any("#" in t or "+" in t for _, t in acls)


def _doc(folder) -> dict:
    return json.loads((folder / "dynsec" / "dynamic-security.json").read_text())


def test_provisioning_writes_config_rotates_passwords_and_keeps_secrets_private(tmp_path):
    key = b"k" * 32
    prov = Provisioner(str(tmp_path / "mosq"))
    first = prov.provision("stage-1", key=key, broker="10.0.0.2:1883",
                           config_dir=str(tmp_path / "cfg"))
    assert first.config_path is not None
    with open(first.config_path) as f:
        text = f.read()
    cfg = device_config.parse(text)  # the firmware accepts it
    assert cfg["mqtt_user"] == "stage-1" and cfg["mqtt_password"] == first.password
    assert cfg["broker_host"] == "10.0.0.2" and cfg["key"] == key
    assert stat.S_IMODE(os.stat(first.config_path).st_mode) == 0o600
    registry = json.loads((tmp_path / "mosq" / "provisioning.json").read_text())
    assert registry == {"stage-1": {"role": "device"}}  # no password kept in clear
    again = prov.provision("stage-1", key=key, config_dir=str(tmp_path / "cfg"))
    assert again.password != first.password and not again.live
    doc = _doc(tmp_path / "mosq")
    (client,) = [c for c in doc["clients"] if c["username"] == "stage-1"]
    assert client["clientid"] == "stage-1"  # bound: no other id logs in with it
    assert client["password"] == dynsec.password_fields(
        again.password, base64.b64decode(client["salt"]))["password"]  # hashed, the new one
    assert first.password not in json.dumps(doc) and again.password not in json.dumps(doc)
    assert stat.S_IMODE(os.stat(tmp_path / "mosq" / "dynsec" / "dynamic-security.json")
                        .st_mode) == 0o600
    prov.provision("gridcast-agent", role="agent")
    doc = _doc(tmp_path / "mosq")
    agent = next(c for c in doc["clients"] if c["username"] == "gridcast-agent")
    assert "clientid" not in agent  # agent-side users choose their ids
    roles = {r["rolename"]: r["acls"] for r in doc["roles"]}
    assert {"acltype": "publishClientSend", "topic": "gridcast/v1/#", "priority": 0,
            "allow": True} in roles["gridcast-agent"]
    assert "gridcast-device-stage-1" in roles and "gridcast-admin" in roles


def test_bad_requests_change_nothing(tmp_path):
    prov = Provisioner(str(tmp_path / "mosq"))
    with pytest.raises(ProvisionError, match="device id"):
        prov.provision("bad/id", key=b"k" * 32)
    with pytest.raises(ProvisionError, match="site key"):
        prov.provision("dev-1")
    prov.provision("dev-1", key=b"k" * 32)
    doc_path = tmp_path / "mosq" / "dynsec" / "dynamic-security.json"
    before = doc_path.read_text()
    (tmp_path / "mosq" / "provisioning.json").write_text("{broken")
    with pytest.raises(ProvisionError, match="unreadable"):
        prov.provision("dev-2", key=b"k" * 32)
    assert doc_path.read_text() == before


def test_firmware_config_checks_credentials():
    base = {"device_id": "d1", "key_hex": "ab" * 16}
    with pytest.raises(ProtocolError, match="mqtt_user"):
        device_config.parse(json.dumps(base | {"mqtt_user": 5}))
    assert device_config.parse(json.dumps(base))["mqtt_user"] == ""


def test_provision_command(tmp_path, capsys):
    keys.generate(str(tmp_path / "site.key"))
    assert cli.main(["provision", "stage-9", "--key-file", str(tmp_path / "site.key"),
                     "--mosquitto-dir", str(tmp_path / "mosq"), "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "stage-9.config.json" in err and "plugin_opt_config_file" in err
    assert cli.main(["provision", "--agent", "--mosquitto-dir", str(tmp_path / "mosq")]) == 0
    assert (tmp_path / "mosq" / "gridcast-agent.password").exists()
    assert cli.main(["provision", "stage-9", "--mosquitto-dir", str(tmp_path / "mosq")]) == 1


def test_provision_with_broker_writes_the_tls_site(tmp_path, capsys):
    """The interface outside checks use: DIR/ca.crt, a complete TLS-only DIR/mosquitto.conf,
    and a device config with mqtts:// and the CA; the CA is kept on later runs."""
    keys.generate(str(tmp_path / "site.key"))
    mosq, out = tmp_path / "mosq", tmp_path / "out"
    args = ["provision", "stage-1", "--key-file", str(tmp_path / "site.key"), "--broker",
            "10.0.0.2:8883", "--mosquitto-dir", str(mosq), "--out", str(out)]
    assert cli.main(args) == 0
    assert "mosquitto -c" in capsys.readouterr().err
    ca_pem = (mosq / "ca.crt").read_text()
    assert stat.S_IMODE(os.stat(mosq / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(mosq / "broker.key").st_mode) == 0o600
    conf = (mosq / "mosquitto.conf").read_text().splitlines()
    listeners = [line for line in conf if line.startswith("listener")]
    assert listeners == ["listener 8883"]  # one listener, and it is the TLS one
    for line in (f"cafile {mosq}/ca.crt", f"certfile {mosq}/broker.crt",
                 f"keyfile {mosq}/broker.key", f"plugin {dynsec.plugin_path()}",
                 f"plugin_opt_config_file {mosq}/dynsec/dynamic-security.json",
                 "allow_anonymous false", "max_packet_size 65536"):
        assert line in conf
    cfg_text = (out / "stage-1.config.json").read_text()
    raw = json.loads(cfg_text)
    assert raw["broker"] == "mqtts://10.0.0.2:8883" and raw["ca_pem"] == ca_pem
    assert raw["mqtt_user"] == "stage-1" and raw["mqtt_password"]
    cfg = device_config.parse(cfg_text)  # the firmware accepts it
    assert cfg["broker_tls"] and (cfg["broker_host"], cfg["broker_port"]) == ("10.0.0.2", 8883)
    from cryptography import x509

    broker_cert = x509.load_pem_x509_certificate((mosq / "broker.crt").read_bytes())
    san = broker_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in san} == {"10.0.0.2", "localhost", "127.0.0.1"}
    # a second device later: the same CA, and --broker need not be repeated
    assert cli.main(["provision", "stage-2", "--key-file", str(tmp_path / "site.key"),
                     "--mosquitto-dir", str(mosq), "--out", str(out)]) == 0
    assert (mosq / "ca.crt").read_text() == ca_pem
    assert json.loads((out / "stage-2.config.json").read_text())["broker"] == \
        "mqtts://10.0.0.2:8883"
    with pytest.raises(ProvisionError, match="HOST:PORT"):
        Provisioner(str(mosq)).provision("stage-3", key=b"k" * 32, broker="10.0.0.2")


def test_client_certificates_once_asked_for_are_required(tmp_path):
    prov = Provisioner(str(tmp_path / "mosq"))
    done = prov.provision("stage-1", key=b"k" * 32, broker="127.0.0.1:8883",
                          config_dir=str(tmp_path / "out"), client_cert=True)
    assert done.client_cert and os.path.exists(done.client_cert)
    raw = json.loads((tmp_path / "out" / "stage-1.config.json").read_text())
    assert "BEGIN CERTIFICATE" in raw["client_cert_pem"] and "PRIVATE KEY" in raw["client_key_pem"]
    assert "require_certificate true" in (tmp_path / "mosq" / "mosquitto.conf").read_text()
    later = prov.provision("gridcast-agent", role="agent")  # no flag: still required
    assert later.client_cert is not None
    assert prov.agent_url() is not None and "&cert=" in prov.agent_url()  # type: ignore[operator]

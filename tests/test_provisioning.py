"""gridcast provision: password file, ACL and device config (hil/tests/test_provision.py checks that
a real mosquitto enforces them against the real firmware)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from gridcast.agent.provisioning import Provisioner, ProvisionError, device_acl
from gridcast.firmware import config as device_config
from gridcast.host import cli
from gridcast.protocol import keys
from gridcast.protocol.errors import ProtocolError


def test_device_acl_allows_only_its_own_topics():
    acl = device_acl("stage-1")
    assert "user stage-1" in acl
    assert "topic write gridcast/v1/dev/stage-1/telemetry" in acl
    assert "topic read gridcast/v1/dev/stage-1/cmd" in acl
    assert "topic read gridcast/v1/all/cmd" in acl
    assert "write gridcast/v1/dev/stage-1/cmd" not in acl  # never its own commands
    assert "#" not in acl and "+" not in acl


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
    assert again.password != first.password
    assert (tmp_path / "mosq" / "passwd").read_text().count("stage-1:") == 1
    prov.provision("gridcast-agent", role="agent")
    acl = (tmp_path / "mosq" / "acl").read_text()
    assert "user gridcast-agent\ntopic readwrite gridcast/v1/#" in acl and "user stage-1" in acl


def test_bad_requests_change_nothing(tmp_path):
    prov = Provisioner(str(tmp_path / "mosq"))
    with pytest.raises(ProvisionError, match="device id"):
        prov.provision("bad/id", key=b"k" * 32)
    with pytest.raises(ProvisionError, match="site key"):
        prov.provision("dev-1")
    prov.provision("dev-1", key=b"k" * 32)
    before = (tmp_path / "mosq" / "acl").read_text()
    (tmp_path / "mosq" / "provisioning.json").write_text("{broken")
    with pytest.raises(ProvisionError, match="unreadable"):
        prov.provision("dev-2", key=b"k" * 32)
    assert (tmp_path / "mosq" / "acl").read_text() == before


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
    assert "stage-9.config.json" in err and "password_file" in err
    assert cli.main(["provision", "--agent", "--mosquitto-dir", str(tmp_path / "mosq")]) == 0
    assert (tmp_path / "mosq" / "gridcast-agent.password").exists()
    assert cli.main(["provision", "stage-9", "--mosquitto-dir", str(tmp_path / "mosq")]) == 1

"""Sealed messages on CPython: what the signer seals, the device's modes and key rotation
state (docs/protocol.md 11). The real firmware under attack: hil/tests/test_forgery.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from gridcast.agent.command_signer import CommandSigner
from gridcast.agent.transport import Transport
from gridcast.firmware import app
from gridcast.firmware.keystore import DeviceKeys
from gridcast.protocol import command_auth, messages, reasons
from gridcast.protocol.errors import ProtocolError
from gridcast.protocol.key_id import key_id

SITE = bytes(range(32))
NEW_SITE = bytes(range(1, 33))


class Board:
    def __init__(self) -> None:
        self.t = 1_000_000
        self.lines: list[str] = []

    def ticks_us(self) -> int:
        return self.t

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_us(self, us: int) -> None:
        self.t += us

    def led_latency_us(self) -> int:
        return 0

    def led_write(self, buf: bytes, beat_index: int | None = None, due: int | None = None,
                  bar_pos: int | None = None) -> int:
        return self.t

    def log(self, text: str) -> None:
        self.lines.append(text)


def device(tmp_path, monkeypatch, provisioned: bool) -> app.Device:
    monkeypatch.chdir(tmp_path)
    cfg = {"key": SITE, "led_count": 4, "device_id": "stage-1"}
    if provisioned:
        cfg["command_key"] = command_auth.device_key(SITE, "stage-1")
    return app.Device(Board(), cfg)


def hello(dev: app.Device) -> messages.Message:
    return messages.decode(dev.hello_message())


def check(dev: app.Device, payload: bytes) -> int:
    """The reason the device refuses ``payload`` with (0: it would act on it)."""
    try:
        dev.auth.check(messages.decode(payload), dev.clock.now_us())
    except ProtocolError as exc:
        return exc.code
    return reasons.OK


def test_a_provisioned_device_takes_only_sealed_commands(tmp_path, monkeypatch):
    dev = device(tmp_path, monkeypatch, provisioned=True)
    h = hello(dev)
    assert h.auth == command_auth.AUTH_REQUIRED and h.boot == dev.telemetry.boot
    signer = CommandSigner(SITE)
    stop = messages.encode("stop")
    assert check(dev, stop) == reasons.UNAUTHENTICATED
    sealed = signer.seal("stage-1", h, stop)
    assert messages.decode(sealed).kind == "sealed"
    assert check(dev, sealed) == reasons.OK
    assert check(dev, sealed) == reasons.REPLAYED
    assert check(dev, CommandSigner(NEW_SITE).seal("stage-1", h, stop)) == reasons.UNKNOWN_KEY
    # a sync answer counts only for an open request of this device, once
    dev.auth.open_syncs.add(7, 123)
    resp = signer.seal("stage-1", h, messages.encode("sync_resp", seq=7, t1_us=123))
    assert messages.decode(resp).counter == 0
    assert check(dev, resp) == reasons.OK
    assert check(dev, resp) == reasons.REPLAYED
    forged = signer.seal("stage-1", h, messages.encode("sync_resp", seq=8, t1_us=124))
    assert check(dev, forged) == reasons.STALE


def test_a_dev_device_takes_unsealed_until_its_agent_seals(tmp_path, monkeypatch):
    dev = device(tmp_path, monkeypatch, provisioned=False)
    h = hello(dev)
    assert h.auth == command_auth.AUTH_OPTIONAL
    assert h.key_ids == key_id(command_auth.device_key(SITE, "stage-1"))  # derived alike
    assert check(dev, messages.encode("stop")) == reasons.OK
    install = messages.encode("key_install", key_id="00000000", key=bytes(32))
    assert check(dev, install) == reasons.UNAUTHENTICATED  # never unsealed
    assert check(dev, CommandSigner(SITE).seal("stage-1", h, messages.encode("stop"))) == 0
    assert check(dev, messages.encode("stop")) == reasons.UNAUTHENTICATED  # from now on


def test_the_signer_leaves_alone_what_needs_no_seal(tmp_path, monkeypatch):
    dev = device(tmp_path, monkeypatch, provisioned=True)
    h = hello(dev)
    signer = CommandSigner(SITE)
    chunk = messages.encode("chunk", transfer_id=1, offset=0, data=b"x")
    assert signer.seal("stage-1", h, chunk) == chunk
    old = messages.decode(messages.encode("hello", proto_version=2, device_id="stage-1"))
    assert signer.seal("stage-1", old, messages.encode("stop")) == messages.encode("stop")
    counters = [messages.decode(signer.seal("stage-1", h, messages.encode("stop"))).counter
                for _ in range(3)]
    assert counters == sorted(set(counters))


class Recorder(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, bytes]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def _send_raw(self, device_id: str, leaf: str, payload: bytes) -> None:
        self.sent.append((device_id, leaf, payload))


def test_a_broadcast_goes_to_each_device_sealed_for_it(tmp_path, monkeypatch):
    dev = device(tmp_path, monkeypatch, provisioned=True)
    t = Recorder()
    t.signer = CommandSigner(SITE)
    t.hellos["stage-1"] = hello(dev)
    t.hellos["old-1"] = messages.decode(messages.encode("hello", proto_version=2,
                                                        device_id="old-1"))
    asyncio.run(t.broadcast(messages.encode("stop")))
    kinds = {d: messages.decode(p).kind for d, _, p in t.sent}
    assert kinds == {"stage-1": "sealed", "old-1": "stop"}
    assert check(dev, t.sent[1][2]) == reasons.OK


def test_rotation_installs_then_retires_and_survives_a_restart(tmp_path, monkeypatch):
    dev = device(tmp_path, monkeypatch, provisioned=True)
    signer = CommandSigner(SITE)
    old_key, old_id = signer.device_key("stage-1", SITE)
    new_key, new_id = signer.device_key("stage-1", NEW_SITE)
    install = messages.encode(
        "key_install", key_id=new_id, key=command_auth.wrap(old_key, b"c", new_key, new_id),
        bundle_key_id=key_id(NEW_SITE),
        bundle_key=command_auth.wrap(old_key, b"b", NEW_SITE, key_id(NEW_SITE)))
    msg = dev.auth.check(messages.decode(signer.seal("stage-1", hello(dev), install)), 0)
    assert dev._dispatch(msg, 0) is None
    assert hello(dev).key_ids == f"{old_id},{new_id}"
    assert key_id(NEW_SITE) in dev.keys.bundle
    signer.add_key(NEW_SITE)
    retire = signer.seal("stage-1", hello(dev), messages.encode("key_retire", key_id=new_id))
    assert messages.decode(retire).key_id == new_id  # the newest key the device holds
    assert dev._dispatch(dev.auth.check(messages.decode(retire), 0), 0) is None
    assert hello(dev).key_ids == new_id
    saved = json.loads((tmp_path / "keys.json").read_text())
    assert [k for k, _ in saved["command"]] == [new_id]
    again = DeviceKeys({"key": SITE, "device_id": "stage-1", "command_key": old_key})
    assert again.ids_text() == new_id  # the rotation outlives a reboot
    other = DeviceKeys({"key": SITE, "device_id": "stage-1", "command_key": bytes(32)})
    assert other.ids_text() == key_id(bytes(32))  # re-provisioned: keys.json is not its


def test_a_wrapped_key_unwrapped_with_another_key_is_refused():
    wrapped = command_auth.wrap(SITE, b"c", NEW_SITE, key_id(NEW_SITE))
    with pytest.raises(ProtocolError) as err:
        command_auth.unwrap(bytes(32), b"c", wrapped, key_id(NEW_SITE))
    assert err.value.code == reasons.INCONSISTENT


def test_the_agent_logs_a_device_refusal_once_in_a_while(caplog):
    from gridcast.agent.transport import Incoming

    t = Recorder()
    refusal = messages.encode("error", reason=reasons.STALE, detail="sealed at agent time 1",
                              ref_tag=messages.STOP)
    with caplog.at_level("WARNING", logger="gridcast.transport"):
        for _ in range(3):
            t._deliver(Incoming("stage-1", "reply", refusal, 0))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "stage-1 refused a message (stale)" in lines[0]
    assert "GRIDCAST_KEY_FILE" in lines[0]  # this agent has no key: it says how to give one


@pytest.mark.parametrize("command", ["stop", "seek", "play", "live"])
def test_the_cli_seals_with_its_key_file(tmp_path, monkeypatch, command):
    """stop/seek/play/live take --key-file (default $GRIDCAST_KEY_FILE) and seal with it:
    what a provisioned device takes."""
    import argparse

    from gridcast.host.cli import options
    from gridcast.host.cli.commands import live, play, seek, stop

    module = {"stop": stop, "seek": seek, "play": play, "live": live}[command]
    site = tmp_path / "site.key"
    site.write_bytes(SITE)
    dev = device(tmp_path, monkeypatch, provisioned=True)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    extra = {"seek": ["3.0"], "play": ["song"]}.get(command, [])
    monkeypatch.delenv(options.KEY_FILE_ENV, raising=False)
    assert options.signer(parser.parse_args([*extra, "--broker", "mqtt://h:1"])) is None
    for argv, env in (([*extra, "--broker", "mqtt://h:1", "--key-file", str(site)], None),
                      ([*extra, "--broker", "mqtt://h:1"], str(site))):
        if env:
            monkeypatch.setenv(options.KEY_FILE_ENV, env)
            parser = argparse.ArgumentParser()
            module.add_arguments(parser)
        signer = options.signer(parser.parse_args(argv))
        assert signer is not None
        sealed = signer.seal("stage-1", hello(dev), messages.encode("stop"))
        assert check(dev, sealed) == reasons.OK

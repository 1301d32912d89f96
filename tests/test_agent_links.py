"""The agent's configuration for hosted links, the settings that are gone, decoding once at
the link's edge, and the one rule for online."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gridcast.agent import config as agent_config
from gridcast.agent import presence
from gridcast.agent.collector import Collector
from gridcast.agent.store import SqliteStore
from gridcast.agent.transport import Incoming, SingleDeviceLink, open_transport
from gridcast.protocol import messages, topics


def test_links_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nlinks = ["serial:/dev/ttyUSB0", "ble://AA:BB:CC:DD:EE:FF"]\n')
    assert agent_config.load(str(path), {}).links == ["serial:/dev/ttyUSB0",
                                                      "ble://AA:BB:CC:DD:EE:FF"]
    cfg = agent_config.load(str(path), {"GRIDCAST_LINKS": "serial:/dev/a, serial:/dev/b?device=x"})
    assert cfg.links == ["serial:/dev/a", "serial:/dev/b?device=x"]
    with pytest.raises(agent_config.ConfigError, match="links: 'mqtt://h:1883': expected serial"):
        agent_config.load(None, {"GRIDCAST_LINKS": "mqtt://h:1883"})
    path.write_text("[agent]\nlinks = 3\n")
    with pytest.raises(agent_config.ConfigError, match="expected a list"):
        agent_config.load(str(path), {})


def test_collectors_is_gone_with_a_message_that_says_what_to_do(tmp_path, caplog):
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\ncollectors = 2\n")
    with pytest.raises(agent_config.ConfigError,
                       match="collectors = 2: this setting was removed; an agent process has "
                             "one MQTT connection and one collector; for more throughput run "
                             "more agent processes with the same collector_group"):
        agent_config.load(str(path), {})
    with caplog.at_level(logging.WARNING):
        assert agent_config.load(None, {"GRIDCAST_COLLECTORS": "1"}).port == 8750
    assert "collectors = 1 is no longer needed" in caplog.text


def test_a_device_can_be_named_in_the_link_url():
    link = open_transport("serial:/dev/null?device=stage-1")
    assert isinstance(link, SingleDeviceLink)
    assert link.device_id == "stage-1" and link.path == "/dev/null"  # type: ignore[attr-defined]


def test_online_is_decided_in_one_place():
    def status(state: str) -> messages.Message:
        return messages.decode(messages.encode("status", state=state))

    assert [presence.is_online(status(s)) for s in ("online", "playing", "idle")] == [True] * 3
    assert [presence.is_online(status(s)) for s in ("lost", "offline", "")] == [False] * 3
    assert not presence.is_online(None)
    assert not presence.is_online(messages.decode(messages.encode("hello")))


class Link(SingleDeviceLink):
    """A link whose device speaks through ``_incoming`` (as serial and BLE backends do)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        pass


def test_messages_are_decoded_once_at_the_links_edge(monkeypatch):
    hello = messages.encode("hello", proto_version=1, device_id="dev-1", max_frame=512)
    telemetry = messages.encode("telemetry", seq=4, drift_us=[120, -80], boot=3)
    seen: list[Incoming] = []

    async def scenario() -> list[Incoming]:
        async with Link() as link:
            link.taps.append(seen.append)
            all_ = link.listen_all()
            link._incoming(hello, 10)
            link._incoming(b"\x93broken", 11)  # dropped at the edge, with a log line
            link._incoming(telemetry, 12)
            got = [await all_.get(), await all_.get()]
            calls: list[bytes] = []
            real = messages.decode
            monkeypatch.setattr(messages, "decode", lambda b: calls.append(b) or real(b))
            assert link.chunk_bytes_for("dev-1") == 512 - 64  # from the decoded hello
            assert calls == []
            return got

    got = asyncio.run(scenario())
    assert [i.leaf for i in got] == [topics.HELLO, topics.TELEMETRY] == [i.leaf for i in seen]
    assert got[1].message.drift_us == [120, -80] and got[1].payload == telemetry
    assert got[1].device_id == "dev-1" and got[1].received_us == 12


def test_the_collector_stores_batches_from_any_link(tmp_path):
    from gridcast.agent.collector import telemetry_batch

    store = SqliteStore(str(tmp_path / "a.db"))
    collector = Collector(store)  # no MQTT: fed only through submit
    collector.start()
    acked: list[int] = []
    for seq in range(5):
        msg = messages.decode(messages.encode("telemetry", seq=seq, drift_us=[seq], boot=1))
        collector.submit(telemetry_batch("serial-dev", msg, 1000 + seq),
                         ack=lambda s=seq: acked.append(s))
    collector.stop()
    assert store.batch_seqs("serial-dev") == [0, 1, 2, 3, 4]
    assert acked == [0, 1, 2, 3, 4] and collector.stats.stored_samples == 5

"""Per-device light offsets: kept by the agent (registry, stored), set through the API and
the CLI, held by a simulated device running the real firmware (MicroPython), and sent
again when a device comes back holding another value."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3

import pytest

from gridcast.agent import config as agent_config
from gridcast.agent.broker import free_port
from gridcast.agent.simulation.devices import Simulator
from gridcast.agent.store import DeviceRecord, open_store
from gridcast.host.cli import main
from tests.test_agent_api import TOKEN, Daemon, request
from tests.test_agent_collector import wait_until

OLD_DEVICES_TABLE = """CREATE TABLE devices (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, fw_version BIGINT NOT NULL,
    active_track TEXT NOT NULL, bundle_version BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL, online INTEGER NOT NULL)"""


def _old_database(store_url: str, make) -> None:
    """A database made before light offsets existed, with one device in it."""
    make(["DROP TABLE IF EXISTS devices", OLD_DEVICES_TABLE,
          "INSERT INTO devices VALUES ('old-1', 'online', 5, 'song', 2, 1000, 1)"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_existing_database_gets_the_new_columns(backend, tmp_path, request) -> None:
    if backend == "sqlite":
        path = str(tmp_path / "old.db")
        url = f"sqlite://{path}"

        def make(statements: list[str]) -> None:
            conn = sqlite3.connect(path)
            for sql in statements:
                conn.execute(sql)
            conn.commit()
            conn.close()
    else:
        url = request.getfixturevalue("postgres_url")
        import psycopg

        def make(statements: list[str]) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                for sql in statements:
                    conn.execute(sql)

    _old_database(url, make)
    store = open_store(url)
    try:
        old = store.device("old-1")
        assert old is not None and old.fw_version == 5 and old.online
        assert old.light_offset_us is None and old.reported_light_offset_us is None
        store.upsert_device(DeviceRecord("old-1", "online", 5, "song", 2, 2000, True,
                                         light_offset_us=-12_500, reported_light_offset_us=0))
    finally:
        store.close()
    again = open_store(url)  # a second open: the columns exist, nothing is added twice
    try:
        record = again.device("old-1")
        assert record is not None
        assert (record.light_offset_us, record.reported_light_offset_us) == (-12_500, 0)
    finally:
        again.close()


def _settings_offset(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "settings.json")) as f:
            return int(json.load(f)["light_offset_us"])
    except FileNotFoundError:
        return None


def test_set_through_the_api_held_by_the_device_kept_and_sent_again(mosquitto, tmp_path,
                                                                    capsys) -> None:
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN,
                                   bundle_dir=str(tmp_path / "bundles")).check()
    sim = Simulator(1, f"127.0.0.1:{mosquitto.port}", secrets.token_bytes(32),
                    str(tmp_path / "sim"), prefix="chain")
    device = sim.devices[0]
    offset_url = lambda daemon: f"{daemon.url}/api/devices/{device.id}/light_offset"  # noqa: E731

    def state(daemon: Daemon) -> dict:
        status, body = request(offset_url(daemon))
        return body if status == 200 else {}

    sim.start()
    try:
        with Daemon(cfg, str(tmp_path / "token")) as daemon:
            wait_until(lambda: state(daemon).get("online") is True, 30)
            assert state(daemon)["reported_light_offset_ms"] == 0.0  # the firmware's default
            assert state(daemon)["light_offset_ms"] is None
            # Bad input: one clear error, nothing changed.
            status, body = request(offset_url(daemon), b'{"light_offset_ms": 5000}', TOKEN)
            assert status == 400 and "at most" in body["error"]
            status, body = request(offset_url(daemon), b'{"light_offset_ms": 1}')
            assert status == 401  # a write needs the token
            status, body = request(f"{daemon.url}/api/devices/nobody/light_offset",
                                   b'{"light_offset_ms": 1}', TOKEN)
            assert status == 404
            # Set through the CLI (the API underneath): the device holds it.
            assert main(["light-offset", device.id, "12.5", "--agent", daemon.url,
                         "--token", TOKEN]) == 0
            assert "kept 12.5 ms" in capsys.readouterr().err
            wait_until(lambda: state(daemon).get("reported_light_offset_ms") == 12.5, 15)
            assert _settings_offset(device.folder) == 12_500  # stored on the device
        # The agent restarts: the offset it keeps is still there.
        with Daemon(cfg, str(tmp_path / "token")) as daemon:
            wait_until(lambda: state(daemon).get("online") is True, 30)
            assert state(daemon)["light_offset_ms"] == 12.5
            # A power cut, and the device comes back holding another value (reflashed):
            # the agent compares what it reports and sends its offset again.
            device.kill()
            with open(os.path.join(device.folder, "settings.json"), "w") as f:
                json.dump({"light_offset_us": -3000}, f)
            device.start()
            # Only the agent's light_offset message turns the device's -3 ms back into 12.5.
            wait_until(lambda: _settings_offset(device.folder) == 12_500, 30)
            wait_until(lambda: state(daemon).get("reported_light_offset_ms") == 12.5, 15)
            # Set while the device is offline: kept, sent when it is back.
            device.kill()
            wait_until(lambda: state(daemon).get("online") is False, 30)
            status, body = request(offset_url(daemon), b'{"light_offset_ms": 30}', TOKEN)
            assert status == 200 and body["sent"] is False and body["light_offset_ms"] == 30
            device.start()
            wait_until(lambda: state(daemon).get("reported_light_offset_ms") == 30.0, 30)
            assert _settings_offset(device.folder) == 30_000
            # The device list shows both values too.
            wait_until(lambda: request(f"{daemon.url}/api/devices")[1][0].get(
                "reported_light_offset_us") == 30_000, 5)
            assert request(f"{daemon.url}/api/devices")[1][0]["light_offset_us"] == 30_000
            # --clear: the agent stops keeping one; the device keeps what it holds.
            assert main(["light-offset", device.id, "--clear", "--agent", daemon.url,
                         "--token", TOKEN, "--json"]) == 0
            cleared = json.loads(capsys.readouterr().out)
            assert cleared["light_offset_ms"] is None and cleared["sent"] is False
    finally:
        sim.stop()

"""The agent daemon and staged rollouts against the real firmware (MicroPython simulators)."""

from __future__ import annotations

import json
import os

import pytest

from gridcast.agent import config as agent_config
from gridcast.agent.broker import free_port
from gridcast.hil.bundles import make_bundle
from gridcast.host import cli
from gridcast.protocol import keys
from tests.test_agent_api import TOKEN, Daemon, request
from tests.test_agent_collector import wait_until

pytestmark = pytest.mark.sim_only


def test_daemon_deploys_to_canaries_then_the_fleet(broker, simulator, key, tmp_path, capsys):
    key_file = tmp_path / "site.key"
    key_file.write_bytes(key)
    os.chmod(key_file, 0o600)
    cfg = agent_config.AgentConfig(broker=broker.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN, key_file=str(key_file),
                                   bundle_dir=str(tmp_path / "bundles")).check()
    sim = simulator(3, f"127.0.0.1:{broker.port}", prefix="fleet")
    ids = sorted(d.id for d in sim.devices)
    bundle = tmp_path / "song.gcb"
    bundle.write_bytes(make_bundle(key, 0.5, track="fleet-song", version=3))
    with Daemon(cfg, str(tmp_path / "token")) as daemon:
        wait_until(lambda: sorted(d["id"] for d in request(daemon.url + "/api/devices")[1]
                                  if d["online"]) == ids, timeout_s=60)
        # the CLI asks the daemon: upload, staged deployment, follow to the end
        code = cli.main(["deploy", str(bundle), "--agent", daemon.url, "--token", TOKEN,
                         "--canary", "1", "--soak", "2", "--json"])
        result = json.loads(capsys.readouterr().out)
        assert code == 0, result
        assert result["state"] == "done" and len(result["canaries"]) == 1
        assert sorted(result["activated"]) == ids
        wait_until(lambda: all(d["active_track"] == "fleet-song" and d["bundle_version"] == 3
                               for d in request(daemon.url + "/api/devices")[1]), timeout_s=20)
        assert cli.main(["devices", "--agent", daemon.url, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [d["id"] for d in listed] == ids
        _, deployments = request(daemon.url + "/api/deployments")
        assert deployments[-1]["state"] == "done"


def test_command_line_staged_rollout_without_the_daemon(broker, simulator, key, tmp_path,
                                                       capsys):
    sim = simulator(2, f"127.0.0.1:{broker.port}", prefix="cli")
    bundle = tmp_path / "song.gcb"
    bundle.write_bytes(make_bundle(key, 0.5, track="cli-song", version=1))
    ids = sorted(d.id for d in sim.devices)
    code = cli.main(["deploy", str(bundle), "--to", *ids, "--broker", broker.url,
                     "--canary", "1", "--soak", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["state"] == "done", result
    assert sorted(result["activated"]) == ids
    other_key = tmp_path / "other.key"
    keys.generate(str(other_key))
    foreign = tmp_path / "foreign.gcb"
    foreign.write_bytes(make_bundle(keys.load(str(other_key)), 0.5, track="cli-song",
                                    version=2))
    code = cli.main(["deploy", str(foreign), "--to", *ids, "--broker", broker.url,
                     "--canary", "1", "--soak", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["state"] == "stopped"
    assert list(result["failed"]) == [ids[0]]  # the canary refused it; nobody else was asked

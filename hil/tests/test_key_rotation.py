"""A new site key rolls out while three devices play: no beat is missed, the old key is
refused afterwards, and bundles signed with the new key are taken (docs/protocol.md 11)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from gridcast.agent import deploy, key_rotation, playback
from gridcast.agent.clock import now_us
from gridcast.agent.command_signer import CommandSigner
from gridcast.agent.simulation.broker_witness import BrokerWitness
from gridcast.agent.simulation.led_report import device_report
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.scenario_helpers import run
from gridcast.hil.sealed_fleet import beat_gaps, sealed_simulator
from gridcast.protocol import messages, reasons, topics

pytestmark = pytest.mark.sim_only

STAGGER_US = 117_000  # a quarter beat between devices: they do not spin at once (test_sync)
PLAY_S = 6
SYNC_S = 3  # clock sync settles before the first beat
OLD_KEY_OFFSET_US = 300_000  # what a holder of the retired key tries to set


def test_rotation_while_three_devices_play_misses_no_beat(broker, key, tmp_path):
    sim = sealed_simulator(3, broker.url, key, str(tmp_path / "sim"), prefix="rot")
    ids = [d.id for d in sim.devices]
    new_key = secrets.token_bytes(32)
    witness = BrokerWitness(broker.url)  # mqtt:// or, with --mqtts, mqtts://...?ca=
    witness.start()
    sim.start()

    async def scenario() -> tuple[key_rotation.Rotation, list[messages.Message], dict]:
        async with open_transport(broker.url, signer=CommandSigner(key)) as t:
            SyncResponder(t).start()
            await t.wait_online(ids, timeout_s=30)
            results = await deploy.deploy(t, ids, make_bundle(key, 1), "hil-song", 1)
            assert all(r.ok for r in results), [r.error for r in results]
            await asyncio.sleep(SYNC_S)
            start = now_us() + 1_500_000
            for k, dev_id in enumerate(ids):
                await playback.play(t, [dev_id], "hil-song", start_us=start + k * STAGGER_US)
            await asyncio.sleep(3.5)
            rotation = await key_rotation.rotate(t, ids, new_key)
            # Still under control with the new key (a rate change that changes nothing),
            # and the old key is refused: the lights go on.
            await playback.set_rate(t, ids, playback.NORMAL_RATE_PPM)
            refusals = t.listen_all()
            old = CommandSigner(key)
            for dev_id in ids:
                shift = old.seal(dev_id, t.hellos[dev_id],
                                 messages.encode("light_offset", offset_us=OLD_KEY_OFFSET_US))
                await t._send_raw(dev_id, topics.CMD, shift)
            await asyncio.sleep(start / 1e6 + PLAY_S - now_us() / 1e6)
            await playback.stop(t, ids)
            answers = []
            while not refusals.empty():
                item = refusals.get_nowait()
                if item.message.kind == "error":
                    answers.append(item.message)
            # A bundle signed with the new site key is taken.
            fresh = await deploy.deploy(t, ids[:1], make_bundle(new_key, 0.2, version=2),
                                        "hil-song", 2)
            hellos = {d: t.hellos[d].key_ids for d in ids}
            assert all(t.hellos[d].light_offset_us == 0 for d in ids)
        return rotation, answers, {"fresh": fresh, "hellos": hellos}

    try:
        rotation, answers, after = run(scenario())
    finally:
        sim.stop()
        witness.stop()
    print(f"\nrotation: installed on 3 devices in {rotation.installed_s * 1000:.0f} ms, "
          f"retired in {rotation.retired_s * 1000:.0f} ms")
    assert after["fresh"][0].ok, after["fresh"][0].error
    for dev_id, held in after["hellos"].items():
        assert "," not in held and held, (dev_id, held)  # one key: the new one
    assert sorted(a.reason for a in answers) == [reasons.UNKNOWN_KEY] * 3, answers
    for dev in sim.devices:
        report, _ = device_report(dev, witness)
        print(f"{dev.id}: {report['beats']} beats, true error p50 "
              f"{report['true_error_p50_ms']} ms, p99 {report['true_error_p99_ms']} ms")
        # Missed = not shown (a beat over 50 ms late is skipped): every beat number from
        # the first to the last is in the LED log, and the play's whole length is there.
        assert beat_gaps(dev.led_log) == []
        assert report["beats"] >= (PLAY_S - 1.5) * 128 / 60 - 2
        # The error figure the sync tests hold to 1 ms at p99 needs a minute of sync
        # first (test_sync.py); after 5 s the median says the clock is locked.
        assert report["true_error_p50_ms"] <= 0.5

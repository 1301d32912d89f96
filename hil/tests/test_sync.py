"""Beat-output accuracy: true LED times against the agent's timeline, with skew and jitter."""

from __future__ import annotations

import asyncio

import pytest

from gridcast.agent import deploy, playback
from gridcast.agent.clock import now_us
from gridcast.agent.simulation.broker_witness import BrokerWitness
from gridcast.agent.simulation.led_report import device_report, scored_beats, timing_problems
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.faults import Jitter, MqttJitterProxy
from gridcast.hil.scenario_helpers import run

pytestmark = pytest.mark.sim_only

# Sync converges: the skew needs tens of seconds of exchanges under 20 ms of jitter (with
# 45 s a run gave aim p99 0.04-0.28 ms on the four devices, with 90 s 0.02-0.16 ms).
WARMUP_S = 60
# 20 s at 128 BPM: 42 beats a device. A stall of a simulator process on the loaded CI
# cores holds a beat up by 1-40 ms (seen), so the test judges the aim of every beat and
# how many the host held up apart (timing_problems, docs/firmware.md); `pytest -s` prints
# the true error, which on a quiet machine gives the figures of docs/agent.md.
PLAY_S = 20
# Each device starts a quarter of a beat (at 128 BPM) after the previous one. On hardware
# every device has its own CPU; here four simulated devices share two cores, and four
# processes waking to spin for the same instant queue for them (a late beat that says
# how busy the bench machine is, not how well the device keeps time).
STAGGER_US = 117_000
REPORT_WAIT_S = 20


def test_beats_land_within_a_millisecond_under_skew_and_jitter(broker, simulator, key):
    """Two devices at -200/+200 ppm on loopback, two at -100/+100 ppm behind 20 +- 10 ms
    of one-way jitter: true LED error p99 <= 1 ms on all; reported drift tracks it.
    Their starts are STAGGER_US apart (see there)."""
    proxy = MqttJitterProxy("127.0.0.1", broker.port, Jitter(10, 30), Jitter(10, 30)).start()
    direct = simulator(2, f"127.0.0.1:{broker.port}", skews_ppm=[-200, 200], prefix="fast")
    jittery = simulator(2, f"127.0.0.1:{proxy.port}", skews_ppm=[-100, 100], prefix="slow")
    devices = direct.devices + jittery.devices
    ids = [d.id for d in devices]
    witness = BrokerWitness(broker.url)  # mqtt:// or, with --mqtts, mqtts://...?ca=
    witness.start()
    bundle = make_bundle(key, 2)

    async def scenario():
        async with open_transport(broker.url) as t:
            responder = SyncResponder(t)
            responder.start()
            await t.wait_online(ids, timeout_s=30)
            results = await deploy.deploy(t, ids, bundle, "hil-song", 1)
            assert all(r.ok for r in results), [r.error for r in results]
            await asyncio.sleep(WARMUP_S)
            start = now_us() + 2_000_000
            for k, dev_id in enumerate(ids):
                await playback.play(t, [dev_id], "hil-song", start_us=start + k * STAGGER_US)
            await asyncio.sleep(2.0 + PLAY_S)
            await playback.stop(t, ids)
            # A beat's drift is reported 31 s after it fired (with hindsight, firmware/
            # telemetry.py): after REPORT_WAIT_S the first third or so of the beats are in.
            await asyncio.sleep(REPORT_WAIT_S)
            await responder.stop()

    try:
        run(scenario())
    finally:
        proxy.stop()
        witness.stop()
    reports = [device_report(dev, witness)[0] for dev in devices]
    for dev, report in zip(devices, reports, strict=True):  # every device's figures first
        print(f"\n{dev.id} ({dev.skew_ppm:+d} ppm): true error p50 "
              f"{report['true_error_p50_ms']} ms, p99 {report['true_error_p99_ms']} ms over "
              f"{report['beats_scored']} beats; reported drift p99 {report['drift_p99_ms']} ms "
              f"(first {report['drift_samples']} beats), "
              f"|drift - true| p99 {report['drift_vs_true_p99_ms']} ms; aim p99 "
              f"{report['aim_error_p99_ms']} ms, {report['held_up_beats']} beats held up "
              f"(max {report['delay_max_ms']} ms)")
    errors, delays = scored_beats(devices, witness)
    assert not timing_problems(errors, delays, 1.0), timing_problems(errors, delays, 1.0)
    for report in reports:
        assert report["beats_scored"] >= 0.9 * PLAY_S * 128 / 60
        # What the device says of itself, beat by beat, against what the bench measured.
        # the beats fired in the first PLAY_S + REPORT_WAIT_S - 31 s, less a second or two
        # for the stagger and the batch period
        assert report["drift_samples"] >= 0.25 * PLAY_S * 128 / 60, report
        assert report["drift_vs_true_p99_ms"] is not None, (  # the counts must pair up
            report["id"], report["drift_samples"], report["beats"], report["beats_scored"],
            report["telemetry_lost"], report["telemetry_duplicates"])
        assert report["drift_vs_true_p99_ms"] <= 0.5

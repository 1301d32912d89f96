"""The forgery scenario (bench/forgery.py, hil/tests/test_forgery.py): devices that take
only sealed commands play behind MqttTamperProxy, which injects forged, replayed,
reordered, altered and held-back commands and sync answers; the agent meanwhile sends
a sealed no-op ``rate`` every RATE_EVERY_S (the attacker's material) and answers sync.

The show first plays ``baseline_s`` with no attack (no material: the agent sends no
rate yet), then under attack; the true LED error is reported for both stretches, so
that a loaded machine shows as such and the attack's own cost stands apart.

The result says, per device, what was injected, what the device counted as refused
(its telemetry), the beats it showed (true error against the agent's real commands,
from the broker witness, which sees no forgery) and whether its state moved.
"""

from __future__ import annotations

import asyncio
import os
import time

from gridcast.agent import deploy, playback
from gridcast.agent.clock import now_us
from gridcast.agent.command_signer import CommandSigner
from gridcast.agent.simulation.broker_witness import BrokerWitness
from gridcast.agent.simulation.devices import SimDevice
from gridcast.agent.simulation.led_report import bundle_beats, device_report, read_led_log
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.faults import MqttTamperProxy
from gridcast.hil.sealed_fleet import AUTH_REASONS, beat_gaps, sealed_simulator

RATE_EVERY_S = 0.25
STAGGER_US = 117_000  # devices a quarter beat apart: they do not spin at once (test_sync)
TELEMETRY_WAIT_S = 2.0  # the last counts reach the witness in the next batches


def _refused(counts: dict[int, int], base: dict[int, int]) -> dict[int, int]:
    out = {}
    for code in AUTH_REASONS:
        n = counts.get(code, 0) - base.get(code, 0)
        if n:
            out[code] = n
    return out


def _errors_ms(dev: SimDevice, witness: BrokerWitness, lo_us: int, hi_us: int) -> dict:
    """p50 / p99 / max of |true LED error| (ms) of the beats shown between two true times."""
    _, beats = bundle_beats(os.path.join(dev.folder, "bundles", "active.gcb"))
    errors = []
    for line in read_led_log(dev.led_log):
        t, idx = line["true_time_us"], line.get("beat_index")
        start = witness.start_for(dev.id, t)
        if lo_us <= t < hi_us and start is not None and isinstance(idx, int) and \
                0 <= idx < len(beats):
            errors.append(abs(t - (start + beats[idx])) / 1000)
    errors.sort()

    def pct(q: float) -> float | None:
        return round(errors[min(len(errors) - 1, int(q * len(errors)))], 3) if errors else None

    return {"beats": len(errors), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": round(errors[-1], 3) if errors else None}


def run_forgery(broker_port: int, key: bytes, state_dir: str, count: int, interval_s: float,
                warmup_s: float, devices: int = 3, minutes: float = 2.0,
                baseline_s: float = 0.0) -> dict:
    """Run the scenario on a broker at 127.0.0.1:``broker_port``; ``count`` forgeries in
    all, one per device every ``interval_s``, after ``warmup_s`` of clock sync and
    ``baseline_s`` of the show without attack."""
    proxy = MqttTamperProxy("127.0.0.1", broker_port, count, interval_s,
                            os.path.join(state_dir, "tamper.json")).start()
    sim = sealed_simulator(devices, f"127.0.0.1:{proxy.port}", key,
                           os.path.join(state_dir, "sim"), prefix="forge")
    ids = [d.id for d in sim.devices]
    witness = BrokerWitness("127.0.0.1", broker_port)
    witness.start()
    sim.start()
    url = f"mqtt://127.0.0.1:{broker_port}"

    def injected() -> int:
        return sum(sum(d["sent"].values()) for d in proxy.stats()["devices"])

    async def scenario() -> dict:
        async with open_transport(url, signer=CommandSigner(key)) as t:
            SyncResponder(t).start()
            await t.wait_online(ids, timeout_s=30)
            results = await deploy.deploy(t, ids, make_bundle(key, minutes), "hil-song", 1)
            if not all(r.ok for r in results):
                raise RuntimeError("deploy failed: " + "; ".join(r.error for r in results))
            await asyncio.sleep(warmup_s)
            base = {d: dict(witness.telemetry[d].error_counts) for d in ids
                    if d in witness.telemetry}
            start = now_us() + 1_000_000
            for k, dev_id in enumerate(ids):
                await playback.play(t, [dev_id], "hil-song", start_us=start + k * STAGGER_US)
            if baseline_s:  # from the first beat (start + 1 s) on, unattacked
                await asyncio.sleep(1.0 + baseline_s)
            attack_from = time.monotonic()
            attack_from_us = now_us()
            limit_s = minutes * 60 - 10
            while injected() < count and time.monotonic() - attack_from < limit_s:
                await playback.set_rate(t, ids, playback.NORMAL_RATE_PPM)
                await asyncio.sleep(RATE_EVERY_S)
            for _ in range(10):  # held packets come out (2.2 s); the proxy writes its tally
                await playback.set_rate(t, ids, playback.NORMAL_RATE_PPM)
                await asyncio.sleep(RATE_EVERY_S)
            attack_s = time.monotonic() - attack_from
            attack_to_us = now_us()
            await asyncio.sleep(TELEMETRY_WAIT_S)
            stop_at = now_us()
            await playback.stop(t, ids)
            status = {d: t.status[d] for d in ids}
            hellos = {d: t.hellos[d] for d in ids}
        return {"base": base, "attack_s": attack_s, "status": status, "hellos": hellos,
                "stop_at": stop_at, "play_us": start, "attack_us": (attack_from_us,
                                                                    attack_to_us)}

    try:
        out = asyncio.run(scenario())
    finally:
        sim.stop()
        proxy.stop()
        witness.stop()
    stats = proxy.stats()
    per_device = []
    for dev in sim.devices:
        tally: dict = next((d for d in stats["devices"] if f"/{dev.id}/" in d["topic"]),
                           {"sent": {}, "expected": {}})
        tele = witness.telemetry.get(dev.id)
        counted = _refused(tele.error_counts if tele else {}, out["base"].get(dev.id, {}))
        report, _ = device_report(dev, witness)
        per_device.append({
            "id": dev.id,
            "injected": sum(tally["sent"].values()),
            "by_kind": tally["sent"],
            "expected_reasons": {int(k): v for k, v in tally["expected"].items()},
            "refused_reasons": counted,
            "refused": sum(counted.values()),
            "beats": report["beats"],
            "beat_gaps": beat_gaps(dev.led_log),
            "true_error_p50_ms": report["true_error_p50_ms"],
            "true_error_p99_ms": report["true_error_p99_ms"],
            "true_error_max_ms": report.get("true_error_max_ms"),
            "light_offset_us": out["status"][dev.id].light_offset_us,
            "active_track": out["status"][dev.id].active_track,
            "bundle_version": out["status"][dev.id].bundle_version,
            "boots": dev.boots,
            "before_attack": _errors_ms(dev, witness, out["play_us"], out["attack_us"][0]),
            "under_attack": _errors_ms(dev, witness, *out["attack_us"]),
        })
    injected_total = sum(d["injected"] for d in per_device)
    refused_total = sum(d["refused"] for d in per_device)
    return {"count": count, "interval_s": interval_s, "attack_s": round(out["attack_s"], 1),
            "injected": injected_total, "refused": refused_total,
            "refused_pct": round(100.0 * refused_total / injected_total, 3)
            if injected_total else None,
            "devices": per_device}

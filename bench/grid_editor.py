"""The grid editor's two targets, measured end to end; prints one JSON object.

1. **Edit to deployed** (target <= 3 s): a real mosquitto, the agent daemon, and three
   simulated devices running the real firmware in the MicroPython unix port. The fleet
   first gets version 1 of a 10-minute map; then, --edits times, one beat is moved
   (POST /api/maps/{name}/edit: saved as a new version) and the new version is bundled and
   deployed to all three (POST /api/maps/{name}/deploy with wait: answered once every
   device has activated it). The figure is the wall time from the edit's request to that
   answer.
2. **Page interactive** (target <= 1 s): headless Chromium opens /editor on the same
   10-minute map, --loads times (a fresh navigation each). The page marks when the map
   is drawn and its handlers are in place (``editor-ready``); the bench then sends a
   key press over CDP (Input.dispatchKeyEvent) and the page notes when that event
   arrived and the frame after the one that showed it. Interactive = ready (from
   navigation start) + the first input's time from event to shown frame. The map's
   audio (a 10-minute WAV of clicks, 22.05 kHz) lies beside it, so the page also loads
   the audio's peaks after it is ready; ``peaks_ms`` is when they are drawn (the agent
   decodes the file once, so the first load pays for it).

    python bench/grid_editor.py [--edits 5] [--loads 5] [--minutes 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent import config as agent_config  # noqa: E402
from gridcast.agent.broker import Mosquitto, free_port  # noqa: E402
from gridcast.agent.simulation.devices import Simulator  # noqa: E402
from gridcast.host.beatmaps import beatmap  # noqa: E402
from gridcast.protocol import keys  # noqa: E402
from tests.editor_helpers import editor_timing, key, synthetic_map  # noqa: E402
from tests.test_agent_api import TOKEN, Cdp, Daemon, HeadlessChromium, request  # noqa: E402

NAME = "long.beatmap.json"


def write_audio(path: str, bm: beatmap.BeatMap, rate: int = 22050) -> None:
    """A click on every beat of the map, louder on the downbeats, for the whole track."""
    import numpy as np
    import soundfile as sf

    audio = np.zeros(int(bm.duration_s * rate), dtype=np.float32)
    click = np.sin(2 * np.pi * 1000 * np.arange(441) / rate) * np.hanning(441)
    for t, pos in zip(bm.beats, bm.beat_in_bar, strict=True):
        i = int(t * rate)
        audio[i:i + 441] += (0.8 if pos == 1 else 0.4) * click[:len(audio[i:i + 441])]
    sf.write(path, audio, rate, subtype="PCM_16")


def post(url: str, body: dict) -> tuple[int, dict]:
    return request(url, json.dumps(body).encode(), TOKEN)


def wait_online(url: str, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, devices = request(url + "/api/devices")
        if status == 200 and sum(1 for d in devices if d["online"]) >= n:
            return
        time.sleep(0.2)
    raise SystemExit(f"the {n} simulated devices did not come online in {timeout_s:.0f} s")


def edits_to_devices(url: str, edits: int) -> dict:
    status, first = post(f"{url}/api/maps/{NAME}/deploy", {"devices": "all", "wait": True})
    if status != 200 or first.get("state") != "done":
        raise SystemExit(f"the first deployment failed: {status} {first}")
    _, m = request(f"{url}/api/maps/{NAME}")
    times, steps = [], []
    for k in range(edits):
        beat = 100 + k
        started = time.monotonic()
        status, saved = post(f"{url}/api/maps/{NAME}/edit",
                             {"op": "move_beat", "index": beat, "to_s": m["beats"][beat] + 0.01,
                              "base_version": m["version"]})
        edited = time.monotonic()
        if status != 200:
            raise SystemExit(f"edit refused: {saved}")
        status, dep = post(f"{url}/api/maps/{NAME}/deploy", {"devices": "all", "wait": True})
        total = time.monotonic() - started
        if status != 200 or dep["state"] != "done" or len(dep["activated"]) != 3:
            raise SystemExit(f"deployment of v{saved['version']} failed: {status} {dep}")
        m = {**m, **saved}
        times.append(total)
        steps.append({"version": saved["version"], "edit_s": round(edited - started, 3),
                      "bundle_and_deploy_s": round(total - (edited - started), 3),
                      "total_s": round(total, 3)})
    return {"edit_to_3_devices_s": {"median": round(statistics.median(times), 3),
                                    "max": round(max(times), 3)}, "runs": steps}


async def page_loads(url: str, loads: int, profile: str) -> dict:
    import aiohttp

    browser = HeadlessChromium(profile)
    runs = []
    try:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=900,
                           deviceScaleFactor=1, mobile=False)
            for _ in range(loads):
                await cdp.call("Page.navigate", url=f"{url}/editor?token={TOKEN}&map={NAME}")
                async with asyncio.timeout(20):
                    while not await cdp.evaluate("document.body && document.body.dataset.ready "
                                                 "=== '1'"):
                        await asyncio.sleep(0.01)
                await key(cdp, "ArrowRight", code="ArrowRight")
                async with asyncio.timeout(5):
                    while (await editor_timing(cdp))["shown_ms"] is None:
                        await asyncio.sleep(0.01)
                async with asyncio.timeout(30):
                    while not await cdp.evaluate("performance.getEntriesByName('editor-peaks')"
                                                 ".length > 0"):
                        await asyncio.sleep(0.01)
                peaks_ms = await cdp.evaluate(
                    "performance.getEntriesByName('editor-peaks')[0].startTime")
                t = await editor_timing(cdp)
                assert t["ready_ms"] is not None and t["input_ms"] is not None
                assert t["shown_ms"] is not None
                handled = t["shown_ms"] - t["input_ms"]
                runs.append({"ready_ms": round(t["ready_ms"], 1),
                             "first_input_to_frame_ms": round(handled, 1),
                             "interactive_ms": round(t["ready_ms"] + handled, 1),
                             "peaks_ms": round(peaks_ms, 1)})
    finally:
        browser.close()
    inter = [r["interactive_ms"] for r in runs]
    return {"page_interactive_ms": {"median": round(statistics.median(inter), 1),
                                    "max": round(max(inter), 1)}, "loads": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="(the output is always JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridcast-editor-bench-") as tmp:
        maps = os.path.join(tmp, "maps")
        bm = synthetic_map(args.minutes * 60.0)
        beatmap.save(bm, os.path.join(maps, NAME))
        write_audio(os.path.join(maps, str(bm.metadata["audio_file"])), bm)
        key_file = os.path.join(tmp, "site.key")
        keys.generate(key_file)
        with Mosquitto(folder=os.path.join(tmp, "broker")) as broker:
            cfg = agent_config.AgentConfig(
                broker=broker.url, database=f"sqlite://{tmp}/a.db", port=free_port(),
                token=TOKEN, key_file=key_file, bundle_dir=os.path.join(tmp, "bundles"),
                maps_dir=maps).check()
            sim = Simulator(3, f"127.0.0.1:{broker.port}", keys.load(key_file),
                            os.path.join(tmp, "sim"), prefix="bench")
            with Daemon(cfg, os.path.join(tmp, "token")) as daemon, sim:
                wait_online(daemon.url, 3)
                deployed = edits_to_devices(daemon.url, args.edits)
                page = asyncio.run(page_loads(daemon.url, args.loads,
                                              os.path.join(tmp, "chrome")))
        bundles = [os.path.join(tmp, "bundles", f) for f in os.listdir(os.path.join(tmp,
                                                                                    "bundles"))]
        size = os.path.getsize(bundles[0]) if bundles else 0
    print(json.dumps({"track_minutes": args.minutes, "beats": len(bm.beats), "devices": 3,
                      "bundle_bytes": size, **deployed, **page,
                      "targets": {"edit_to_3_devices_s": 3.0, "page_interactive_ms": 1000.0}},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The beat-grid editor: its edits as map versions (host/beatmaps/corrections.py), its API
(agent/map_api.py) on a real daemon, and its page in headless Chromium driven with real
mouse and key events over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from gridcast.agent import config as agent_config
from gridcast.agent.broker import free_port
from gridcast.host.beatmaps import beatmap, corrections
from gridcast.host.errors import BeatMapError
from tests import test_agent_api
from tests.editor_helpers import (
    click,
    editor_timing,
    grid_point,
    key,
    mouse_drag,
    synthetic_map,
    taps,
)
from tests.test_agent_api import TOKEN, Cdp, Daemon, HeadlessChromium, request
from tests.test_agent_collector import wait_until

key_path = test_agent_api.key_path
NAME = "song.beatmap.json"
DESK_TOKEN = "lighting-desk-token-0123456789"  # a named token (api_tokens in the config)


@pytest.fixture
def map_file(tmp_path) -> str:
    folder = tmp_path / "maps"
    folder.mkdir()
    path = str(folder / NAME)
    beatmap.save(synthetic_map(60.0), path)
    rate = 8000  # the map's audio, beside it: 5 s of a 440 Hz tone, louder from 2 s
    t = np.arange(5 * rate) / rate
    sf.write(str(folder / "synthetic.wav"), 0.2 * (1 + 3 * (t > 2)) * np.sin(880 * np.pi * t),
             rate)
    return path


def edit(path: str, change: str, make, by: str = "tester") -> beatmap.BeatMap:
    current = beatmap.load(path)
    return corrections.save_version(path, current, make(current), change, {}, by)


def test_edits_are_versions_with_who_and_when_and_undo_restores_as_a_new_version(map_file):
    v1 = beatmap.load(map_file)
    v2 = edit(map_file, "edit", lambda m: corrections.move_beat(m, 5, float(m.beats[5]) + 0.03))
    v3 = edit(map_file, "edit", lambda m: corrections.shift_grid(m, 12.0))
    assert v3.beats[5] == pytest.approx(v1.beats[5] + 0.042)
    assert [e["by"] for e in v3.history[1:]] == ["tester", "tester"]
    assert v3.history[-1]["created_at"].endswith("+00:00")
    assert os.path.exists(map_file.replace(".json", ".v1.json"))
    assert os.path.exists(map_file.replace(".json", ".v2.json"))
    # two undos go back two edits; each is a new version, so the trail keeps all five
    u1 = corrections.undo(map_file, beatmap.load(map_file), "tester")
    assert u1.version == 4 and np.allclose(u1.beats, v2.beats, atol=1e-4)
    u2 = corrections.undo(map_file, beatmap.load(map_file), "tester")
    assert u2.version == 5 and np.array_equal(u2.beats, v1.beats)
    assert [e["change"] for e in u2.history] == ["analysis", "edit", "edit", "undo", "undo"]
    assert u2.history[-1]["edits"] == {"restores": 1, "undoes": 4}
    with pytest.raises(BeatMapError, match="nothing to undo"):
        corrections.undo(map_file, u2, "tester")


def test_grid_edits_keep_the_bars_and_sections_consistent(map_file):
    m = beatmap.load(map_file)
    down = corrections.set_downbeat(m, float(m.beats[6]))
    assert down.beat_in_bar[6] == 1 and down.beat_in_bar[10] == 1 and down.beat_in_bar[7] == 2
    tapped = corrections.regrid(m, 125.0, float(m.beats[8]))
    assert tapped.tempo_bpm == pytest.approx(125.0, abs=0.01)
    assert tapped.beats[np.argmin(abs(tapped.beats - m.beats[8]))] == pytest.approx(m.beats[8])
    assert tapped.beat_in_bar[np.argmin(abs(tapped.beats - m.beats[8]))] == 1
    split = corrections.split_section(m, 20.0)
    assert len(split.sections) == len(m.sections) + 1
    i = next(k for k, s in enumerate(split.sections) if s.end_s == 20.0)
    assert split.sections[i].source == "edit" and split.sections[i + 1].start_s == 20.0
    merged = corrections.merge_sections(split, i)
    assert [(s.start_s, s.end_s) for s in merged.sections] == [(s.start_s, s.end_s)
                                                               for s in m.sections]
    assert corrections.set_section_role(m, 0, "drop").sections[0].role == "drop"
    empty = beatmap.load(map_file)
    empty.beats, empty.beat_in_bar, empty.beat_strength = np.zeros(0), np.zeros(0, int), \
        np.zeros(0)
    fresh = corrections.regrid(empty, 120.0, 1.0)  # a map without beats: tap a grid in
    assert fresh.beats[0] == 0.0 and fresh.beat_in_bar[:4].tolist() == [3, 4, 1, 2]
    bare = beatmap.load(map_file)
    bare.sections = []
    assert [(s.start_s, s.end_s) for s in corrections.split_section(bare, 10.0).sections] \
        == [(0.0, 10.0), (10.0, 60.0)]


@pytest.fixture
def daemon(mosquitto, tmp_path, key_path, map_file):
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN, key_file=key_path,
                                   bundle_dir=str(tmp_path / "bundles"),
                                   maps_dir=os.path.dirname(map_file),
                                   api_tokens={"lighting-desk": DESK_TOKEN}).check()
    with Daemon(cfg, str(tmp_path / "token")) as d:
        yield d


def post(daemon, path: str, body: dict, token: str | None = TOKEN):
    return request(daemon.url + path, json.dumps(body).encode(), token)


def test_the_api_saves_edits_refuses_disorder_and_stale_pages(daemon, map_file):
    status, maps = request(daemon.url + "/api/maps")
    assert status == 200 and [(m["name"], m["version"]) for m in maps] == [(NAME, 1)]
    status, m = request(daemon.url + f"/api/maps/{NAME}")
    assert status == 200 and len(m["beats"]) > 100 and m["sections"] and m["undo_to"] is None
    assert len(m["envelopes"]["bass"]) > 0
    before = Path(map_file).read_bytes()
    # beat 10 dragged past beat 11: refused with the reason, the file untouched
    status, answer = post(daemon, f"/api/maps/{NAME}/edit",
                          {"op": "move_beat", "index": 10, "to_s": m["beats"][11] + 0.01,
                           "base_version": 1})
    assert status == 422 and "must stay in order" in answer["error"]
    assert "unchanged" in answer["error"] and Path(map_file).read_bytes() == before
    assert post(daemon, f"/api/maps/{NAME}/edit", {"op": "shift"}, token=None)[0] == 401
    status, v2 = post(daemon, f"/api/maps/{NAME}/edit",
                      {"op": "move_beat", "index": 10, "to_s": m["beats"][10] + 0.02,
                       "base_version": 1})
    assert status == 200 and v2["version"] == 2 and v2["undo_to"] == 1
    assert v2["history"][-1]["by"] == "default"  # the config's token is named "default"
    assert v2["history"][-1]["edits"]["move_beat"] == 10
    status, stale = post(daemon, f"/api/maps/{NAME}/edit",
                         {"op": "shift", "offset_ms": 5, "base_version": 1})
    assert status == 409 and "version 2" in stale["error"]
    status, v3 = post(daemon, f"/api/maps/{NAME}/undo", {"base_version": 2})
    assert status == 200 and v3["version"] == 3 and v3["beats"] == m["beats"]
    status, answer = post(daemon, f"/api/maps/{NAME}/edit",  # on a beat: two at one time
                          {"op": "add_beat", "at_s": m["beats"][20], "base_version": 3})
    assert status == 422 and "must stay in order" in answer["error"]
    middle = round((m["beats"][20] + m["beats"][21]) / 2, 4)
    status, v4 = post(daemon, f"/api/maps/{NAME}/edit",
                      {"op": "add_beat", "at_s": middle, "base_version": 3})
    assert status == 200 and len(v4["beats"]) == len(m["beats"]) + 1 and middle in v4["beats"]
    status, v5 = post(daemon, f"/api/maps/{NAME}/edit",
                      {"op": "delete_beat", "at_s": middle + 0.01, "base_version": 4})
    assert status == 200 and v5["beats"] == m["beats"]
    status, peaks = request(daemon.url + f"/api/maps/{NAME}/peaks")
    assert status == 200 and peaks["audio"] and peaks["rate_hz"] == 100
    level = np.frombuffer(base64.b64decode(peaks["peaks"]), np.uint8)
    assert len(level) == 500 and level[300:].min() >= 250 and level[50:150].max() < 80
    # no device online: the deployment is refused with the devices it knows (none)
    status, dep = post(daemon, f"/api/maps/{NAME}/deploy", {"devices": "all"})
    assert status == 400 and "known device ids" in dep["error"]


def test_the_page_drags_a_beat_taps_the_tempo_and_undoes_with_real_input(daemon, map_file,
                                                                       tmp_path):
    first = beatmap.load(map_file)
    browser = HeadlessChromium(str(tmp_path / "chrome"))

    async def scenario() -> dict:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Emulation.setDeviceMetricsOverride", width=1200, height=800,
                           deviceScaleFactor=1, mobile=False)
            page = f"{daemon.url}/editor?token={DESK_TOKEN}&map={NAME}"
            await cdp.call("Page.navigate", url=page)
            await cdp.wait_for("document.body.dataset.ready === '1'", timeout_s=10)
            timing = await editor_timing(cdp)
            # Space plays the audio beside the map from the cursor, Space again pauses
            await cdp.wait_for("editor.audio.src !== ''", timeout_s=5)
            x, y = await grid_point(cdp, 1.0)
            await click(cdp, x, y)
            await key(cdp, " ", code="Space")
            await cdp.wait_for("editor.audio.currentTime > 1.3", timeout_s=5)
            await key(cdp, " ", code="Space")
            await cdp.wait_for("editor.audio.paused", timeout_s=5)
            # drag beat 3 right by 20 px, with the mouse
            t3 = float(first.beats[3])
            x, y = await grid_point(cdp, t3)
            span = await cdp.evaluate("editor.span")
            await mouse_drag(cdp, x, y, x + 20)
            await cdp.wait_for("editor.map.version === 2 && !editor.busy", timeout_s=5)
            moved = await cdp.evaluate("editor.map.beats[3]")
            # beat 5 dragged past beat 6 (35 px on): refused, the page says why, still v2
            x, y = await grid_point(cdp, float(first.beats[5]))
            await mouse_drag(cdp, x, y, x + 45)
            await cdp.wait_for("document.getElementById('status').className === 'error'",
                               timeout_s=5)
            refused = await cdp.evaluate("[editor.map.version, editor.map.beats[5], "
                                         "document.getElementById('status').textContent]")
            # tap the tempo (6 taps, 0.5 s apart = 120 BPM) and apply it with Enter
            await taps(cdp, 6, 0.5)
            tapped = await cdp.evaluate("editor.tapBpm")
            await key(cdp, "Enter")
            await cdp.wait_for("editor.map.version === 3 && !editor.busy", timeout_s=5)
            tempo = await cdp.evaluate("editor.map.tempo_bpm")
            await key(cdp, "z", code="KeyZ", modifiers=2)  # Ctrl+Z
            await cdp.wait_for("editor.map.version === 4 && !editor.busy", timeout_s=5)
            status = await cdp.evaluate("document.getElementById('status').textContent")
            # click at 8 s (the cursor), S splits the section at the nearest downbeat; a
            # click on the first section's strip picks it, M merges it with the next
            x, y = await grid_point(cdp, 8.0)
            await click(cdp, x, y)
            await key(cdp, "s")
            await cdp.wait_for("editor.map.version === 5 && !editor.busy", timeout_s=5)
            split = await cdp.evaluate("editor.map.sections.map(s => [s.start_s, s.end_s])")
            x, _ = await grid_point(cdp, 2.0)
            await click(cdp, x, await cdp.evaluate(
                "document.getElementById('grid').getBoundingClientRect().bottom - 8"))
            await key(cdp, "m")
            await cdp.wait_for("editor.map.version === 6 && !editor.busy", timeout_s=5)
            merged = await cdp.evaluate("editor.map.sections.length")
            # an edit made elsewhere (the API, the config's token) shows up in the page
            await asyncio.to_thread(post, daemon, f"/api/maps/{NAME}/edit",
                                    {"op": "shift", "offset_ms": 5, "base_version": 6})
            await cdp.wait_for("editor.map.version === 7", timeout_s=5)
            elsewhere = await cdp.evaluate("document.getElementById('status').textContent")
            return {"elsewhere": elsewhere, "refused": refused, "split": split,
                    "merged": merged, "timing": timing, "span": span, "moved": moved,
                    "tapped": tapped, "tempo": tempo, "status": status}

    try:
        seen = asyncio.run(scenario())
    finally:
        browser.close()
    expected = float(first.beats[3]) + 20 / 1200 * seen["span"]
    assert seen["moved"] == pytest.approx(expected, abs=0.003)
    assert seen["refused"][:2] == [2, pytest.approx(first.beats[5], abs=1e-4)]
    assert "must stay in order" in seen["refused"][2]
    assert 118 < seen["tapped"] < 122 and 118 < seen["tempo"] < 122
    assert "version 7 was saved elsewhere (edit by default)" in seen["elsewhere"]
    final = beatmap.load(map_file.replace(".json", ".v6.json"))
    assert final.version == 6 and [e["by"] for e in final.history[1:]] == ["lighting-desk"] * 5
    assert [e["change"] for e in final.history[1:]] == ["edit", "edit", "undo", "edit", "edit"]
    v2 = beatmap.load(map_file.replace(".json", ".v2.json"))
    assert v2.history[-1]["edits"]["move_beat"] == 3
    assert v2.beats[3] == pytest.approx(seen["moved"], abs=1e-4)
    v4 = beatmap.load(map_file.replace(".json", ".v4.json"))
    assert np.array_equal(v4.beats, v2.beats)  # the undo went back to the dragged grid
    assert "undo by lighting-desk" in seen["status"]
    bar_at_8s = min(first.downbeats, key=lambda t: abs(t - 8.0))
    assert seen["split"] == [[0.0, pytest.approx(bar_at_8s, abs=1e-4)],
                             [pytest.approx(bar_at_8s, abs=1e-4), 60.0]]
    assert seen["merged"] == 1 and final.sections[0].source == "edit"
    assert seen["timing"]["ready_ms"] is not None and seen["timing"]["ready_ms"] < 5000


def test_the_deploy_button_puts_the_edited_map_on_three_simulated_devices(
        mosquitto, tmp_path, key_path, map_file):
    """Real firmware (MicroPython unix port) on three simulated devices: an edit, then a
    click on "bundle + deploy"; every device activates the new version."""
    from gridcast.agent.simulation.devices import Simulator
    from gridcast.protocol import keys

    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN, key_file=key_path,
                                   bundle_dir=str(tmp_path / "bundles"),
                                   maps_dir=os.path.dirname(map_file)).check()
    sim = Simulator(3, f"127.0.0.1:{mosquitto.port}", keys.load(key_path),
                    str(tmp_path / "sim"), prefix="ed")
    browser = HeadlessChromium(str(tmp_path / "chrome"))

    async def scenario(url: str) -> str:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Page.navigate", url=f"{url}/editor?token={TOKEN}&map={NAME}")
            await cdp.wait_for("document.body.dataset.ready === '1'", timeout_s=10)
            x, y = await grid_point(cdp, float(beatmap.load(map_file).beats[2]))
            await mouse_drag(cdp, x, y, x - 10)
            await cdp.wait_for("editor.map.version === 2 && !editor.busy", timeout_s=5)
            bx, by = await cdp.evaluate("(() => { const r = document.getElementById('deploy')"
                                        ".getBoundingClientRect(); return [r.x + r.width / 2,"
                                        " r.y + r.height / 2]; })()")
            await click(cdp, bx, by)
            await cdp.wait_for("/: (done|stopped)/.test(document.getElementById('status')"
                               ".textContent)", timeout_s=15)
            return await cdp.evaluate("document.getElementById('status').textContent")

    with sim, Daemon(cfg, str(tmp_path / "token")) as daemon:
        try:
            wait_until(lambda: sum(d["online"] for d in request(daemon.url + "/api/devices")[1])
                       == 3, timeout_s=30)
            status = asyncio.run(scenario(daemon.url))
        finally:
            browser.close()
        _, deployments = request(daemon.url + "/api/deployments")
    assert "of version 2: done" in status, status
    assert sorted(deployments[-1]["activated"]) == ["ed-01", "ed-02", "ed-03"]
    assert deployments[-1]["bundle_version"] == 2

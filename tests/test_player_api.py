"""The daemon's show player over HTTP, WebSocket and the dashboard: a real daemon (mosquitto,
SQLite), its sound played into a virtual room (JACK dummy backend), driven through
/api/player and by real clicks on the dashboard's now-playing panel in headless Chromium.

No devices here: the lights' side of the player is tested in tests/test_show_player.py.
The set list is made of click tracks handed to the player instead of analyzed files
(the daemon calls the host's analysis for real paths; that is `gridcast play`'s code).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from gridcast.agent import config as agent_config
from gridcast.agent.audio.clicks import click_train
from gridcast.agent.audio.errors import RoomError
from gridcast.agent.audio.room import VirtualRoom
from gridcast.agent.broker import free_port
from gridcast.agent.player_api import PlayerService
from gridcast.agent.show.set_list import ShowTrack
from gridcast.host.evaluation import demo_audio
from tests.test_agent_api import TOKEN, Cdp, Daemon, HeadlessChromium, key_path, request
from tests.test_agent_collector import wait_until

__all__ = ["key_path"]  # the fixture, used by name
RATE = 48000
TRACK_S = 12.0
BEAT_S = 0.5


def click_tracks(paths: list[str]) -> list[ShowTrack]:
    """One click track per "path": clicks every BEAT_S, TRACK_S long."""
    tracks = []
    for path in paths:
        beats = np.arange(0.25, TRACK_S - 0.1, BEAT_S)
        signal, _ = click_train(RATE, beats, TRACK_S)
        tracks.append(ShowTrack(path, path, b"", 1, beats.tolist(),
                                lambda signal=signal: (signal, RATE)))
    return tracks


@pytest.fixture
def player_daemon(mosquitto, tmp_path, key_path, monkeypatch) -> Iterator[Daemon]:
    monkeypatch.setattr(PlayerService, "_analyze", lambda self, paths: click_tracks(paths))
    yield from _daemon_in_a_room(mosquitto, tmp_path, key_path)


@pytest.fixture
def analyzing_daemon(mosquitto, tmp_path, key_path) -> Iterator[Daemon]:
    """The daemon as shipped: queued paths are analyzed and bundled for real."""
    yield from _daemon_in_a_room(mosquitto, tmp_path, key_path)


def _daemon_in_a_room(mosquitto: Any, tmp_path: Any, key_path: str) -> Iterator[Daemon]:
    try:
        room = VirtualRoom(period_frames=1024).start()
    except RoomError as exc:  # pragma: no cover - a machine without jackd
        pytest.skip(str(exc))
    try:
        with Daemon(_room_config(mosquitto, tmp_path, key_path, room),
                    str(tmp_path / "token")) as daemon:
            yield daemon
    finally:
        room.stop()


def _room_config(mosquitto: Any, tmp_path: Any, key_path: str,
                 room: VirtualRoom) -> agent_config.AgentConfig:
    return agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                    port=free_port(), token=TOKEN, key_file=key_path,
                                    bundle_dir=str(tmp_path / "bundles"),
                                    audio_output=room.output_device,
                                    room_latency_ms=4.0).check()


def call(daemon: Daemon, command: str, body: bytes = b"{}") -> tuple[int, Any]:
    return request(f"{daemon.url}/api/player/{command}", body, TOKEN)


def state(daemon: Daemon) -> dict:
    return request(f"{daemon.url}/api/player")[1]


def queue_three(daemon: Daemon) -> None:
    assert call(daemon, "queue", b'{"paths": ["one", "two", "three"]}')[0] == 202
    wait_until(lambda: len(state(daemon)["tracks"]) == 3, 10)


def test_transport_over_rest_and_events_over_the_websocket(player_daemon) -> None:
    daemon = player_daemon
    first = state(daemon)
    assert first["state"] == "stopped" and first["tracks"] == []
    assert first["room_latency_ms"] == 4.0
    status, body = call(daemon, "play")
    assert status == 409 and "set list is empty" in body["error"]
    assert request(f"{daemon.url}/api/player/play", b"{}")[0] == 401  # writes need the token
    status, body = call(daemon, "queue", b'{"paths": "one"}')
    assert status == 400
    queue_three(daemon)

    async def scenario() -> list[dict]:
        events: list[dict] = []
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"{daemon.url}/ws?token={TOKEN}") as ws:
            status, body = await asyncio.to_thread(call, daemon, "play")
            assert status == 200 and body["state"] == "playing" and body["index"] == 0
            async with asyncio.timeout(10):
                while not {"now_playing", "position", "next_beat"} <= {
                        e.get("event") for e in events}:
                    message = await ws.receive_json()
                    if message["type"] == "player":
                        events.append(message)
        return events

    events = asyncio.run(scenario())
    now_playing = next(e for e in events if e["event"] == "now_playing")
    assert now_playing["title"] == "one" and now_playing["duration_s"] == TRACK_S
    assert state(daemon)["room_latency_ms"] == 4.0  # the config's, applied by the output
    beat = next(e for e in events if e["event"] == "next_beat")
    assert (beat["beat_s"] - 0.25) / BEAT_S == pytest.approx(round((beat["beat_s"] - 0.25)
                                                                    / BEAT_S))
    # The position moves with the sound.
    before = state(daemon)["position_s"]
    wait_until(lambda: state(daemon)["position_s"] > before + 0.5, 5)
    # Pause holds the position; resume goes on from it.
    status, paused = call(daemon, "pause")
    assert status == 200 and paused["state"] == "paused"
    held = paused["position_s"]
    assert state(daemon)["position_s"] == held
    status, resumed = call(daemon, "resume")
    assert resumed["state"] == "playing"
    assert abs(state(daemon)["position_s"] - held) < 0.6
    # Seek, next, previous.
    assert call(daemon, "seek", b'{"position_s": "x"}')[0] == 400
    assert call(daemon, "seek", b'{"position_s": 7.5}')[0] == 200
    wait_until(lambda: 7.4 <= state(daemon)["position_s"] <= 8.5, 3)
    status, after = call(daemon, "next")
    assert after["index"] == 1 and after["track"]["title"] == "two"
    status, back = call(daemon, "previous")  # within 3 s of the start: the track before
    assert back["index"] == 0
    status, stopped = call(daemon, "stop")
    assert stopped["state"] == "stopped"
    # The waveform the dashboard draws.
    status, wave = request(f"{daemon.url}/api/player/waveform?index=2")
    assert status == 200 and wave["title"] == "three" and wave["duration_s"] == TRACK_S
    assert len(wave["peaks"]) == 800 and max(wave["peaks"]) == 1.0
    assert len(wave["beats_s"]) == len(np.arange(0.25, TRACK_S - 0.1, BEAT_S))
    assert request(f"{daemon.url}/api/player/waveform?index=9")[0] == 404


def test_the_set_list_survives_a_restart_stopped_at_its_track(player_daemon, mosquitto,
                                                              tmp_path, key_path,
                                                              caplog) -> None:
    queue_three(player_daemon)
    assert call(player_daemon, "play", b'{"index": 1}')[1]["index"] == 1
    assert call(player_daemon, "stop")[1]["state"] == "stopped"
    saved = tmp_path / "bundles" / "set_list.json"
    assert json.loads(saved.read_text()) == {"inputs": ["one", "two", "three"], "index": 1}
    player_daemon.__exit__(None, None, None)  # the daemon stops (the room stays)
    cfg = _room_config(mosquitto, tmp_path, key_path, VirtualRoom())  # the same folders
    cfg.audio_output = player_daemon.cfg.audio_output
    with Daemon(cfg, str(tmp_path / "token")) as again:
        wait_until(lambda: len(state(again)["tracks"]) == 3, 10)
        restored = state(again)
        assert restored["state"] == "stopped" and restored["index"] == 1
        assert [t["title"] for t in restored["tracks"]] == ["one", "two", "three"]
    # A file it cannot read: an empty set list, and the file left for a person to see.
    saved.write_text("{not json")
    cfg.port = free_port()
    with Daemon(cfg, str(tmp_path / "token")) as third:
        wait_until(lambda: "cannot read the saved set list" in caplog.text, 10)
        assert state(third)["tracks"] == []
    assert saved.read_text() == "{not json"


def test_queued_files_are_analyzed_and_bad_ones_reported(analyzing_daemon, tmp_path) -> None:
    daemon = analyzing_daemon
    signal, beats, _ = demo_audio.render(seconds=10.0)
    song = tmp_path / "song.wav"
    sf.write(str(song), signal, demo_audio.SAMPLE_RATE)
    (tmp_path / "notes.txt").write_text("not audio")

    async def scenario() -> list[dict]:
        events: list[dict] = []
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"{daemon.url}/ws?token={TOKEN}") as ws:
            for paths in ([str(tmp_path / "notes.txt")], [str(song)]):
                body = json.dumps({"paths": paths}).encode()
                assert (await asyncio.to_thread(call, daemon, "queue", body))[0] == 202
            async with asyncio.timeout(60):
                while {"queue", "queue_failed"} - {e.get("event") for e in events}:
                    message = await ws.receive_json()
                    if message["type"] == "player":
                        events.append(message)
        return events

    events = asyncio.run(scenario())
    failed = next(e for e in events if e["event"] == "queue_failed")
    assert "none of the 1 files could be analyzed" in failed["reason"]
    assert "notes.txt" in failed["reason"]
    queued = next(e for e in events if e["event"] == "queue")
    assert [t["title"] for t in queued["tracks"]] == ["song.wav"]
    status, wave = request(f"{daemon.url}/api/player/waveform?index=0")
    assert status == 200 and wave["duration_s"] == pytest.approx(10.0, abs=0.01)
    # The analyzer's beats of a song with known beats: about as many, at about the times.
    assert abs(len(wave["beats_s"]) - len(beats)) <= 2
    status, playing = call(daemon, "play")
    assert status == 200 and playing["state"] == "playing"
    assert playing["track"]["track_id"] and playing["track"]["bundle_version"] >= 1


async def click(cdp: Cdp, selector: str, fraction_x: float = 0.5) -> None:
    """A real mouse click (press and release) at a point of the element."""
    box = await cdp.evaluate(f"(() => {{ const r = document.querySelector({selector!r})"
                             ".getBoundingClientRect(); return [r.left, r.top, r.width, "
                             "r.height]; })()")
    x, y = box[0] + box[2] * fraction_x, box[1] + box[3] / 2
    for kind in ("mousePressed", "mouseReleased"):
        await cdp.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                       clickCount=1)


def test_the_dashboard_now_playing_panel_drives_the_player(player_daemon, tmp_path) -> None:
    daemon = player_daemon
    queue_three(daemon)
    browser = HeadlessChromium(str(tmp_path / "chrome"))

    async def scenario() -> bytes:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"{daemon.url}/?token={TOKEN}")
            await cdp.wait_for("document.getElementById('np-title')?.textContent === 'one'")
            await cdp.wait_for("window.nowPlaying.wave && window.nowPlaying.wave.peaks.length "
                               "=== 800")
            await click(cdp, "#np-play")
            await asyncio.to_thread(wait_until, lambda: state(daemon)["state"] == "playing", 5)
            await cdp.wait_for("document.getElementById('np-state').textContent === 'playing'")
            # The playhead moves.
            first = await cdp.evaluate("window.nowPlaying.playheadX")
            await asyncio.sleep(1.0)
            second = await cdp.evaluate("window.nowPlaying.playheadX")
            assert second > first + 0.5 / TRACK_S
            await click(cdp, "#np-pause")
            await asyncio.to_thread(wait_until, lambda: state(daemon)["state"] == "paused", 5)
            await cdp.wait_for("document.getElementById('np-state').textContent === 'paused'")
            await click(cdp, "#np-play")  # resumes
            await asyncio.to_thread(wait_until, lambda: state(daemon)["state"] == "playing", 5)
            # A click on the waveform at 75 % seeks there.
            await click(cdp, "#np-wave", 0.75)
            await asyncio.to_thread(wait_until, lambda: abs(
                state(daemon)["position_s"] - 0.75 * TRACK_S) < 0.6, 5)
            await click(cdp, "#np-next")
            await asyncio.to_thread(wait_until, lambda: state(daemon)["index"] == 1, 5)
            await cdp.wait_for("document.getElementById('np-title').textContent === 'two' && "
                               "document.querySelector('#np-track-1.current') !== null")
            await cdp.wait_for("window.nowPlaying.wave.title === 'two'")
            shot = await cdp.call("Page.captureScreenshot", format="png")
            await click(cdp, "#np-stop")
            await asyncio.to_thread(wait_until, lambda: state(daemon)["state"] == "stopped", 5)
            return base64.b64decode(shot["data"])

    try:
        png = asyncio.run(scenario())
    finally:
        browser.close()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    (tmp_path / "now-playing.png").write_bytes(png)

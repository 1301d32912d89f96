"""The operator's live controls: the tempo octave (a tempo hint) and the downbeat."""

from __future__ import annotations

import numpy as np
import pytest

from gridcast.agent.live_mode import LiveConfig, LiveMode, LiveModeError
from gridcast.agent.tracker_beat_source import TrackerBeatSource
from tests.conftest import click_track

RATE = 44_100
BLOCK = 512


def heard_us(frame: float) -> float:
    return frame / RATE * 1e6


def feed(source: TrackerBeatSource, signal: np.ndarray, first: int = 0) -> None:
    for start in range(0, len(signal), BLOCK):
        source.feed(signal[start:start + BLOCK], first + start, heard_us)


def test_the_tempo_hint_picks_the_octave_of_an_ambiguous_rhythm():
    """Clicks at 150 BPM, every other one louder: the tracker alone takes every click;
    told 75 BPM it follows the loud ones, and the beats it predicts are theirs."""
    signal, clicks = click_track(150.0, 12.0, sr=RATE, accent_every=2)
    for hint, period_s, on in ((None, 0.4, clicks), (75.0, 0.8, clicks[::2])):
        source = TrackerBeatSource(RATE, now_us=lambda: 0, tempo_hint=hint)
        feed(source, signal)
        beats = np.array([b.at_us for b in source.upcoming(11_000_000, 2_000_000)]) / 1e6
        source.close()
        assert abs(60 / source.tempo - period_s) < 0.01, (hint, source.tempo)
        grid = on[-1] + period_s * np.arange(1, 6)  # the same rhythm, carried on
        assert len(beats) >= 2
        assert np.abs(beats[:, None] - np.r_[on, grid][None, :]).min(axis=1).max() < 0.03, (
            hint, beats)


def test_a_new_hint_restarts_the_tracker_and_its_beats_keep_the_input_timeline():
    """The hint changes 8 s into the stream: the restarted tracker counts its samples
    from there, so the beats it predicts still fall on the loud clicks."""
    signal, clicks = click_track(150.0, 16.0, sr=RATE, accent_every=2)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    cut = 8 * RATE // BLOCK * BLOCK
    feed(source, signal[:cut])
    assert abs(source.tempo - 150) < 3
    source.set_tempo_hint(75.0)
    feed(source, signal[cut:], first=cut)
    beats = np.array([b.at_us for b in source.upcoming(15_000_000, 2_000_000)]) / 1e6
    source.close()
    assert source.tempo_hint == 75.0 and abs(source.tempo - 75) < 2, source.tempo
    loud = np.r_[clicks[::2], clicks[::2][-1] + 0.8 * np.arange(1, 4)]
    assert len(beats) >= 2
    assert np.abs(beats[:, None] - loud[None, :]).min(axis=1).max() < 0.03, beats


def test_the_operators_downbeat_is_the_one_and_the_bar_is_counted_from_it():
    signal, _ = click_track(120.0, 10.0, sr=RATE)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    with pytest.raises(ValueError, match="no beat to set yet"):
        source.set_downbeat(0)
    feed(source, signal)
    before = source.upcoming(9_000_000, 2_500_000)
    target = before[2]  # a beat the tracker does not call the one
    if target.beat_in_bar == 1:
        target = before[3]
    one = source.set_downbeat(target.at_us + 40_000, beats_per_bar=3)  # a late tap
    after = source.upcoming(9_000_000, 2_500_000)
    assert one == target.at_us
    by_time = {b.at_us: b.beat_in_bar for b in after}
    assert by_time[target.at_us] == 1
    bibs = [b.beat_in_bar for b in after if b.at_us >= target.at_us]
    assert bibs == [(k % 3) + 1 for k in range(len(bibs))], bibs
    # the tracker's next beats are counted on, not taken from its guesses
    feed(source, signal[:3 * RATE], first=len(signal))  # clicks on at 10.5 .. 12.5 s
    later = source.upcoming(12_600_000, 2_000_000)
    assert later and all(
        b.beat_in_bar == (round((b.at_us - one) / 500_000) % 3) + 1 for b in later), later
    source.close()


def test_a_press_between_the_beats_moves_them_half_a_beat_until_the_tracker_moves_itself():
    """The operator hears the beat between the tracker's: a press there moves the beats
    given half a beat. When the music's clicks move half a beat too (the tracker then
    finds them itself), the beats given stay where they were and the move ends, with
    the bar counted on across it."""
    signal, _ = click_track(120.0, 10.0, sr=RATE)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    feed(source, signal)
    before = [b.at_us for b in source.upcoming(9_000_000, 2_000_000)]
    press = before[1] + 250_000 + 30_000  # between two beats, a little late
    one = source.set_downbeat(press, beats_per_bar=4)
    assert source.half_beat and abs(one - (before[1] + 250_000)) < 1000
    moved = source.upcoming(9_000_000, 2_000_000)
    grid = np.r_[before[0] - 500_000, before] + 250_000
    assert moved and all(np.abs(grid - b.at_us).min() < 1000 for b in moved), (moved, before)
    assert {b.at_us: b.beat_in_bar for b in moved}[one] == 1
    # The tracker keeps its phase on the same clicks: the move stays.
    feed(source, signal[:2 * RATE], first=len(signal))
    assert source.half_beat
    # Clicks from 12 s on sit half a beat later: on the beats given.
    shifted, _ = click_track(120.0, 8.0, sr=RATE, start_s=0.75)
    feed(source, shifted, first=len(signal) + 2 * RATE)
    assert not source.half_beat
    later = source.upcoming(19_700_000, 2_000_000)
    clicks_after = 12.0 + 0.75 - 0.5 + 0.5 * np.arange(40)  # the moved clicks, in s
    assert later and all(np.abs(b.at_us / 1e6 - clicks_after).min() < 0.03 for b in later)
    assert all(b.beat_in_bar == round((b.at_us - one) / 500_000) % 4 + 1 for b in later), later
    # A press on a beat given keeps them where they are.
    assert source.set_downbeat(later[0].at_us + 20_000) == later[0].at_us
    assert not source.half_beat
    source.close()


def test_the_move_ends_when_the_tempo_changes():
    """A move made at one tempo means nothing at another (the tracker had the tempo
    wrong, or the song changed): from the new tempo on, the tracker's beats are given."""
    signal, _ = click_track(120.0, 10.0, sr=RATE)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    feed(source, signal)
    before = [b.at_us for b in source.upcoming(9_000_000, 2_000_000)]
    source.set_downbeat(before[1] + 250_000)
    assert source.half_beat
    faster, clicks = click_track(150.0, 10.0, sr=RATE)
    feed(source, faster, first=len(signal))
    assert not source.half_beat and abs(source.tempo - 150) < 3
    given = np.array([b.at_us for b in source.upcoming(19_000_000, 1_500_000)]) / 1e6
    on = 10.0 + np.r_[clicks, clicks[-1] + 0.4 * np.arange(1, 5)]
    assert len(given) >= 2 and np.abs(given[:, None] - on[None, :]).min(axis=1).max() < 0.03


def test_bad_controls_are_refused_with_the_range():
    with pytest.raises(LiveModeError, match="40-230 BPM"):
        LiveConfig(tempo_hint=300)
    with pytest.raises(LiveModeError, match="Link session gives its own tempo"):
        LiveConfig(source="link", tempo_hint=120)
    mode = LiveMode(LiveConfig(), source=TrackerBeatSource(RATE))
    with pytest.raises(LiveModeError, match="40-230 BPM"):
        mode.set_tempo_hint(20)
    with pytest.raises(LiveModeError, match="no beat to set yet"):
        mode.set_downbeat(0)
    with pytest.raises(ValueError, match="give 2-12"):
        mode.source.set_downbeat(0, beats_per_bar=1)
    mode.close()


def test_the_dashboard_sets_and_clears_the_hint_and_says_why_a_control_cannot_act(
        mosquitto, tmp_path):
    """Real mouse clicks and typing over CDP on the dashboard, live mode on the virtual
    room's silent input: the bar's source and the hint go to the agent at start, the
    hint while it runs and from taps; x2 and the downbeat say why they cannot act
    before any beat."""
    import asyncio

    import aiohttp

    from gridcast.agent import config as agent_config
    from gridcast.agent.audio.room import VirtualRoom
    from gridcast.agent.broker import free_port
    from tests.test_agent_api import TOKEN, Cdp, Daemon, HeadlessChromium, request
    from tests.test_player_api import click

    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN,
                                   bundle_dir=str(tmp_path / "bundles")).check()
    api = f"http://127.0.0.1:{cfg.port}/api/live"

    def live() -> dict:
        return request(api, token=TOKEN)[1]

    async def press(cdp: Cdp, selector: str) -> None:
        """A real click, the element first scrolled into the (small) headless viewport."""
        await cdp.evaluate(f"document.querySelector({selector!r})"
                           ".scrollIntoView({block: 'center'})")
        await click(cdp, selector)

    async def type_into(cdp: Cdp, selector: str, text: str) -> None:
        await press(cdp, selector)
        await cdp.evaluate(f"document.querySelector({selector!r}).select()")
        await cdp.call("Input.insertText", text=text)

    async def scenario(room: VirtualRoom) -> None:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{cfg.port}/?token={TOKEN}")
            await cdp.wait_for("document.getElementById('live-status').textContent === 'off'")
            assert await cdp.evaluate("document.getElementById('live-double').disabled")
            await type_into(cdp, "#live-input", room.output_device)
            await type_into(cdp, "#live-hint", "128")
            # bar from: the tracker's guess, picked with the keyboard on the select
            await cdp.evaluate("document.getElementById('live-bars').focus()")
            await cdp.call("Input.dispatchKeyEvent", type="rawKeyDown", key="ArrowDown",
                           code="ArrowDown", windowsVirtualKeyCode=40)
            await cdp.call("Input.dispatchKeyEvent", type="keyUp", key="ArrowDown",
                           code="ArrowDown", windowsVirtualKeyCode=40)
            await cdp.wait_for("document.getElementById('live-bars').value === 'tracker'")
            await press(cdp, "#live-start")
            await cdp.wait_for("document.getElementById('live-status').textContent"
                               ".includes('(hint 128)')")
            assert live()["tempo_hint"] == 128
            assert live()["config"]["bars"] == "tracker"
            await press(cdp, "#live-double")  # nothing followed yet: said, nothing sent
            await cdp.wait_for("document.getElementById('live-error').textContent === "
                               "'no tempo followed yet'")
            await press(cdp, "#live-downbeat")
            await cdp.wait_for("document.getElementById('live-error').textContent"
                               ".includes('no beat to set yet')")
            await type_into(cdp, "#live-hint", "90")
            await press(cdp, "#live-sethint")
            await cdp.wait_for("document.getElementById('live-status').textContent"
                               ".includes('(hint 90)')")
            assert live()["tempo_hint"] == 90
            for _ in range(5):  # tapped at 120 BPM: the taps are the tempo, not a wait
                await press(cdp, "#live-tap")
                await asyncio.sleep(0.5)
            await cdp.wait_for("document.getElementById('live-status').textContent"
                               ".includes('(hint 1')")
            assert 100 <= live()["tempo_hint"] <= 140, live()["tempo_hint"]
            await press(cdp, "#live-clearhint")
            await cdp.wait_for("!document.getElementById('live-status').textContent"
                               ".includes('hint')")
            assert live()["tempo_hint"] is None
            await press(cdp, "#live-stop")
            await cdp.wait_for("document.getElementById('live-status').textContent"
                               ".startsWith('stopped')")
            assert live()["running"] is False

    with VirtualRoom(44_100, 512) as room, Daemon(cfg, str(tmp_path / "token")):
        browser = HeadlessChromium(str(tmp_path / "chrome"))
        try:
            asyncio.run(scenario(room))
        finally:
            browser.close()


def test_the_terminals_keys_set_the_octave_and_the_downbeat(monkeypatch):
    """gridcast live's keys, typed into a pseudo-terminal: * and / set the hint from the
    tempo followed, 0 clears it, space sets the downbeat; the terminal is restored."""
    import asyncio
    import os
    import pty
    import termios

    from gridcast.host.cli.live_keys import operator_keys

    signal, _ = click_track(150.0, 8.0, sr=RATE, accent_every=2)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    mode = LiveMode(LiveConfig(), source=source)
    master, slave = pty.openpty()
    stdin = os.fdopen(slave, "r")
    monkeypatch.setattr("sys.stdin", stdin)
    before = termios.tcgetattr(slave)
    said: list[str] = []
    modes: list[list] = []

    async def press(keys: str, answers: int) -> None:
        os.write(master, keys.encode())
        async with asyncio.timeout(5):
            while len(said) < answers:
                await asyncio.sleep(0.01)

    moved: list[bool] = []

    async def scenario() -> None:
        with operator_keys(mode, said.append) as reading:
            assert reading and not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak
            await press("*", 1)  # before any music
            feed(source, signal)
            await press("/", 2)
            await press(" ", 3)
            moved.append(source.half_beat)  # a press between the beats moves them
            await press("x0", 4)  # x is not a key: only 0 answers
        modes.append(termios.tcgetattr(slave))

    try:
        asyncio.run(scenario())
    finally:
        mode.close()
        stdin.close()
        os.close(master)
    assert said[0] == "no tempo followed yet"
    assert said[1] == "tempo hint 75 BPM", said  # 150 followed, halved
    assert said[2] == "downbeat set" + (", beats moved half a beat" if moved[0] else "")
    assert said[3] == "any tempo"
    assert source.tempo_hint is None
    assert modes == [before]  # the terminal as it was

"""Live mode without a map: the tracker beat source, the timed input, the runner.

Fast parts run in simulated time (host/live/replay.py: the same source and sender, a
model device that keeps the protocol's firing rules); the input and the runner run on
stand-in streams in real time (a few seconds). The virtual-room run with the real
firmware is bench/live.py (docs/live.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import mir_eval
import numpy as np
import pytest

from gridcast.agent.clock import now_us
from gridcast.agent.live_beat_source import SourceState
from gridcast.agent.live_mode import LiveConfig, LiveMode, LiveModeError, status_line
from gridcast.host.live.live_input import LiveInput
from gridcast.host.live.replay import replay
from gridcast.protocol import messages
from tests.conftest import ClickInput, click_track
from tests.test_live_follow import RecordingTransport

RATE = 44_100


def f_measure(ref_s: np.ndarray, est_s: np.ndarray) -> float:
    return float(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref_s),
                                         mir_eval.beat.trim_beats(est_s)))


def test_predicted_beats_land_on_the_clicks_after_lock():
    """128 BPM clicks: what the devices fire, predicted ahead, is on the beat (the
    tracker reads clicks from silence ~15-20 ms early, docs/native.md) and scores as
    well as the tracker's own beats."""
    signal, beats = click_track(128.0, 20.0, sr=RATE)
    run = replay(signal, RATE, network_ms=20.0)
    led = run.led_us / 1e6
    led = led[led <= 20.0]
    tracker = np.array([b.heard_us for b in run.tracker]) / 1e6
    after = beats[beats > 4.0]
    errors = np.array([np.min(np.abs(led - b)) for b in after]) * 1000
    assert np.median(errors) < 25 and np.max(errors) < 40, errors
    assert f_measure(beats, led) >= f_measure(beats, tracker) - 0.01
    assert f_measure(beats, led) > 0.95
    gaps = np.diff(led)
    assert gaps.min() > 0.6 * 60 / 128  # never a double flash
    assert [s for _, s in run.states][:2] == ["idle", "locked"]


def test_replay_with_the_rooms_input_latency_decides_late_and_still_predicts():
    """Replay's input latency (the room's: the block reaches live mode 35 ms after its
    last sample was heard): every beat is decided at least that late, and the beats the
    devices fire, predicted ahead, stay on the clicks."""
    signal, beats = click_track(128.0, 20.0, sr=RATE)
    run = replay(signal, RATE, network_ms=5.0, poll_ms=20.0, input_latency_ms=35.0)
    late_ms = np.array([b.decided_us - b.heard_us for b in run.tracker]) / 1000
    assert late_ms.min() >= 35.0, late_ms
    led = run.led_us / 1e6
    led = led[led <= 20.0]
    errors = np.array([np.min(np.abs(led - b)) for b in beats[beats > 4.0]]) * 1000
    assert np.median(errors) < 25 and np.max(errors) < 40, errors


def test_a_microphone_in_a_hall_with_a_crowd_still_locks_and_follows():
    """Live mode hears the demo song through a microphone at the back of a hall (RT60
    1.6 s, the tail 3 dB over the direct sound) with a crowd talking and clapping 10 dB
    under the music, with the room's input latency: the devices lock within 2 s and stay
    on the beat (docs/live.md measures the dev sets through such rooms)."""
    from gridcast.host.evaluation import demo_audio
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics
    from gridcast.host.live.realtime import lock_time_s

    signal, beats, _ = demo_audio.render(seconds=24.0, bpm=112.0, sample_rate=RATE)
    heard = RoomAcoustics(reverb_s=1.6, drr_db=-3.0, crowd_snr_db=10.0).apply(signal, RATE)
    assert np.corrcoef(heard, signal)[0, 1] < 0.9  # the room is really there
    run = replay(heard, RATE, network_ms=5.0, poll_ms=20.0, input_latency_ms=35.0)
    led = run.led_us / 1e6
    assert lock_time_s(beats, led, 24.0) <= 2.0
    errors = np.array([np.min(np.abs(led - b)) for b in beats[beats > 6.0]]) * 1000
    assert np.median(errors) < 15 and np.max(errors) < 40, errors


def test_a_replayed_press_on_the_one_sets_the_bar_the_devices_show():
    """The operator presses on click 21 (an unaccented one, 11 s), 15 ms late, in a bar
    of 3: the beats the devices show after the press count the bar from it. A press
    before any beat is refused and counted."""
    signal, beats = click_track(120.0, 16.0, sr=RATE)
    press = beats[21] + 0.015
    run = replay(signal, RATE, presses=[(0.2, None), (press, 3)])
    assert run.refused_presses == 1
    led, bib = run.led_us / 1e6, run.led_bib
    shown = (led > press) & (led < 15.5)
    on_clicks = np.round((led[shown] - beats[21]) / 0.5).astype(int)
    assert len(on_clicks) >= 8 and np.allclose(led[shown], beats[21] + 0.5 * on_clicks,
                                               atol=0.03)
    assert list(bib[shown]) == [k % 3 + 1 for k in on_clicks], (on_clicks, bib[shown])


def test_silence_coasts_on_the_tempo_then_goes_idle():
    """Clicks for 10 s, then 12 s of silence: the devices go on at the tempo for the
    coast (strength fading), then nothing; never a beat off the grid."""
    clicks, beats = click_track(120.0, 10.0, sr=RATE)
    signal = np.concatenate([clicks, np.zeros(12 * RATE, np.float32)])
    coast_s = 3.0
    run = replay(signal, RATE, coast_s=coast_s)
    assert [s for _, s in run.states] == ["idle", "locked", "coasting", "idle"]
    coasting, idle = run.states[2][0] / 1e6, run.states[3][0] / 1e6
    # the tracker gives up within ~1 s of silence (docs/native.md), plus two beats
    assert 10.0 < coasting < 10.0 + 2.5
    assert idle - coasting == pytest.approx(coast_s, abs=0.02)
    led = run.led_us / 1e6
    late = led[led > 10.0]
    assert len(late) >= 3 and late.max() <= idle
    grid = beats[-1] + np.round((late - beats[-1]) / 0.5) * 0.5
    assert np.max(np.abs(late - grid)) < 0.03  # coasting keeps the tempo and phase


class StampedInput:
    """sounddevice.InputStream's interface with PortAudio's times: blocks of a signal,
    each callback run late by a random 0-4 ms (a busy machine); ``currentTime`` and
    ``inputBufferAdcTime`` on a stream clock that starts at 100 s. Every
    ``overflow_every``-th callback reports an input overflow."""

    overflow_every = 0
    signal = np.zeros(RATE * 3, np.float32)

    def __init__(self, samplerate, blocksize, channels, dtype, callback, device=None):
        self.rate, self.blocksize, self.callback = int(samplerate), blocksize, callback
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0_us = 0

    def _run(self) -> None:
        rng = np.random.default_rng(1)
        self.t0_us = now_us() + 20_000
        for i, start in enumerate(range(0, len(self.signal) - self.blocksize, self.blocksize)):
            end_s = (start + self.blocksize) / self.rate
            late = rng.uniform(0, 0.004)
            due_us = self.t0_us + (end_s + late) * 1e6
            if self.stopped.wait(max(0.0, (due_us - now_us()) / 1e6)):
                return
            times = SimpleNamespace(currentTime=100.0 + end_s + late,
                                    inputBufferAdcTime=100.0 + start / self.rate)
            flag = SimpleNamespace(input_overflow=True) if (
                self.overflow_every and i % self.overflow_every == self.overflow_every - 1
            ) else None
            self.callback(self.signal[start:start + self.blocksize, None], self.blocksize,
                          times, flag)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def test_input_frames_are_timed_by_the_adc_not_by_the_callback():
    live = LiveInput(rate=RATE, blocksize=512, stream_factory=StampedInput)
    with live:
        for _block, first in live.blocks(timeout_s=1.0):
            if first >= 2.5 * RATE:
                break
        stream = live.stream
        # frame n entered the ADC at t0 + n / rate; callbacks ran up to 4 ms late
        errors = [live.heard_us(n) - (stream.t0_us + n / RATE * 1e6)
                  for n in range(RATE, int(2.5 * RATE), 4410)]
    assert np.max(np.abs(errors)) < 600, errors  # µs; the wake-up jitter is gone
    assert live.overflows == 0


class _GilWaitingInput:
    """A stream whose Python callback always starts 3 ms after PortAudio stamped the
    buffer (``currentTime``): it waited for the GIL. ``time`` reads the stream clock
    (the agent's minus 1 s) when asked, as ``Pa_GetStreamTime`` does."""

    def __init__(self, samplerate, blocksize, channels, dtype, callback, device=None):
        self.callback, self.agent_us = callback, 0

    @property
    def time(self) -> float:
        return self.agent_us / 1e6 - 1.0


def test_a_callback_that_waited_for_the_gil_is_timed_by_the_stream_clock():
    clock: list[int] = []
    live = LiveInput(rate=RATE, blocksize=512, stream_factory=_GilWaitingInput,
                     now_us=lambda: clock[-1])
    stream, errors = live.stream, []
    for k in range(RATE * 10 // 512):
        adc_us = 5_000_000 + round(k * 512 / RATE * 1e6)  # when its first frame came in
        stamped_us = adc_us + round(512 / RATE * 1e6) + 100  # PortAudio's callback began
        stream.agent_us = stamped_us + 3000  # the Python callback, after the GIL
        clock.append(stream.agent_us)
        times = SimpleNamespace(currentTime=stamped_us / 1e6 - 1.0,
                                inputBufferAdcTime=adc_us / 1e6 - 1.0)
        live._callback(np.zeros((512, 1), np.float32), 512, times, None)
        errors.append(live.heard_us(k * 512) - adc_us)
    # Timed by currentTime, every bound was 3 ms late, and so was the line.
    assert np.max(np.abs(errors[100:])) < 50.0, errors[100:110]


def test_input_overflows_are_counted_logged_and_shown(caplog):
    class Overflowing(StampedInput):
        overflow_every = 10

    caplog.set_level(logging.WARNING, logger="gridcast.live")
    mode = LiveMode(LiveConfig(rate=RATE), stream_factory=Overflowing).open()
    deadline = time.monotonic() + 3
    while mode.input.frames < 2 * RATE and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the stand-in's progress
    status = mode.status()
    mode.close()
    blocks = 2 * RATE // 512
    assert blocks // 10 - 1 <= status["overflows"] <= blocks // 10 + 2
    assert "overflows" in status_line(status)
    assert any("overflowed" in r.message for r in caplog.records)
    # logged at most once a second, not once per overflow
    assert len([r for r in caplog.records if "overflowed" in r.message]) <= 3


def test_live_mode_sends_beats_and_envelopes_then_cancels():
    """A paced click input through LiveMode: live_beats ahead of time and live_env
    blocks go out; stopping sends the empty list that lets the devices go idle."""

    class Clicks(ClickInput):
        pace = True
        seconds = 8.0

    Clicks.music_at_us = 0
    transport = RecordingTransport()

    async def scenario() -> dict:
        async with transport:
            mode = LiveMode(LiveConfig(rate=22_050), stream_factory=Clicks)
            stop = asyncio.Event()
            task = asyncio.create_task(mode.run(transport, ["d1"], stop))
            await asyncio.sleep(7.0)
            status = mode.status()
            stop.set()
            await task
            return status

    status = asyncio.run(scenario())
    sent = [messages.decode(p) for _, p in transport.sent]
    beats = [m for m in sent if m.kind == "live_beats"]
    envs = [m for m in sent if m.kind == "live_env"]
    assert status["state"] == "locked" and abs(status["tempo_bpm"] - 120) < 3, status
    assert len(beats) >= 3 and beats[-1].times_us == []  # the cancel
    for m in beats[:-1]:
        assert all(b > a for a, b in zip(m.times_us, m.times_us[1:], strict=False))
    assert len(envs) >= 20
    assert max(max(m.bass) for m in envs) > 100  # the clicks show as energy
    assert all(len(m.bass) == len(m.mid) == len(m.high) > 0 for m in envs)


def test_nothing_is_predicted_from_the_first_beat_alone():
    """The tracker's first beat comes with its prior tempo, not one it measured (161 BPM
    at confidence 0.04 on every dev clip): the devices get beats only from its second
    beat on, one period of the clicks apart."""
    from gridcast.agent.tracker_beat_source import TrackerBeatSource

    signal, _ = click_track(100.0, 8.0, sr=RATE, start_s=1.0)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    seen: list[tuple[int, list]] = []  # (beat events so far, the answer after the block)
    for start in range(0, len(signal), 512):
        source.feed(signal[start:start + 512], start, lambda n: n / RATE * 1e6)
        end_us = round((start + 512) / RATE * 1e6)
        seen.append((source.beats, source.upcoming(end_us, 3_000_000)))
    source.close()
    assert any(n == 1 for n, _ in seen) and any(n >= 2 for n, _ in seen)
    assert all(answer == [] for n, answer in seen if n < 2)
    answers = [answer for n, answer in seen if n >= 4 and len(answer) >= 2]
    assert answers, "no beats predicted once the tracker had four"
    period_s = np.diff([b.at_us for b in answers[-1]]) / 1e6
    assert np.allclose(period_s, 0.6, atol=0.02), period_s


def test_a_bad_source_is_refused_with_the_choices():
    with pytest.raises(LiveModeError, match="input, link"):
        LiveConfig(source="mic")
    with pytest.raises(LiveModeError, match="audio, tracker"):
        LiveConfig(bars="guess")


@pytest.mark.parametrize("bars", ["audio", "tracker"])
def test_live_mode_finds_the_bar_in_a_worker_or_leaves_it_to_the_tracker(bars):
    """An input's live mode reads its bar windows in the worker thread (never in the
    input's reader); --bars tracker reads none."""
    mode = LiveMode(LiveConfig(rate=RATE, bars=bars), stream_factory=StampedInput).open()
    try:
        found = mode.source.bars
        if bars == "tracker":
            assert found is None
        else:
            assert found is not None and found._worker is not None
            assert found._worker.name == "gc-live-bars" and found._worker.is_alive()
    finally:
        mode.close()
    if found is not None:
        assert not found._worker.is_alive()  # closing live mode stops the worker


def test_the_daemon_loads_and_checks_a_tempo_hint_without_the_native_tracker():
    """Only an audio input needs the C tracker: the daemon, its live API and the hint's
    check load without the extension (a server built without a compiler, say)."""
    code = ("import sys; sys.modules['gridcast.native'] = None\n"
            "import gridcast.agent.daemon, gridcast.agent.live_api\n"
            "from gridcast.agent.live_mode import LiveConfig, LiveModeError\n"
            "try:\n"
            "    LiveConfig(source='input', tempo_hint=500)\n"
            "except LiveModeError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tempo hint 500 BPM: give 40-230 BPM" in done.stdout


def test_an_idle_source_is_idle_before_any_audio():
    from gridcast.agent.tracker_beat_source import TrackerBeatSource

    source = TrackerBeatSource(RATE)
    assert source.state is SourceState.IDLE and source.upcoming(0, 2_000_000) == []
    source.feed(np.zeros(RATE, np.float32), 0, lambda n: n / RATE * 1e6)
    assert source.upcoming(1_000_000, 2_000_000) == [] and source.state is SourceState.IDLE
    source.close()


def test_the_daemon_starts_shows_and_stops_live_mode(mosquitto, tmp_path):
    """/api/live on a real daemon: bad requests are one error line; on the virtual room's
    (silent) input, live mode runs idle, shows its state, refuses a second start, and
    stops."""
    from gridcast.agent import config as agent_config
    from gridcast.agent.audio.room import VirtualRoom
    from gridcast.agent.broker import free_port
    from tests.test_agent_api import TOKEN, Daemon, request

    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN,
                                   bundle_dir=str(tmp_path / "bundles")).check()
    url = f"http://127.0.0.1:{cfg.port}/api/live"
    with VirtualRoom(44_100, 512) as room, Daemon(cfg, str(tmp_path / "token")):
        assert request(url, token=TOKEN) == (200, {"running": False})
        status, body = request(url, b'{"source": "mic"}', token=TOKEN)
        assert status == 400 and "input, link" in body["error"]
        status, body = request(url, b'{"bars": "guess"}', token=TOKEN)
        assert status == 400 and "audio, tracker" in body["error"]
        status, body = request(url, b'{"input": "no such input"}', token=TOKEN)
        assert status == 400 and "no audio input device" in body["error"]
        start = json.dumps({"input": room.output_device, "rate": 44_100}).encode()
        status, body = request(url, start, token=TOKEN)
        assert status == 201 and body["running"] and body["source"] == "input", body
        assert request(url, start, token=TOKEN)[0] == 409
        time.sleep(0.5)  # let it listen to the silence for a while
        status, body = request(url, token=TOKEN)
        assert body["running"] and body["state"] == "idle" and body["overflows"] >= 0
        # the operator's controls
        status, body = request(url + "/tempo", b'{"hint": 128}', token=TOKEN)
        assert status == 200 and body["tempo_hint"] == 128, body
        status, body = request(url + "/tempo", b'{"hint": 500}', token=TOKEN)
        assert status == 400 and "40-230 BPM" in body["error"]
        status, body = request(url + "/tempo", b'{}', token=TOKEN)
        assert status == 400 and 'give "hint"' in body["error"]
        status, body = request(url + "/downbeat", b'{}', token=TOKEN)
        assert status == 400 and "no beat to set yet" in body["error"]
        assert request(url, token=TOKEN)[1]["tempo_hint"] == 128
        status, body = http_delete(url)
        assert status == 200 and body["running"] is False
        assert request(url, token=TOKEN)[1]["running"] is False
        assert request(url + "/tempo", b'{"hint": null}', token=TOKEN)[0] == 409


def http_delete(url: str) -> tuple[int, dict]:
    import urllib.request

    from tests.test_agent_api import TOKEN

    req = urllib.request.Request(url, method="DELETE",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def test_a_link_source_goes_out_without_envelopes():
    """--link: the source's beats go out as they are; no input, so no envelopes and no
    overflow count."""
    from tests.test_live_sender import GridSource

    transport = RecordingTransport()
    source = GridSource(period_us=400_000, origin_us=now_us())

    async def scenario() -> dict:
        async with transport:
            mode = LiveMode(LiveConfig(source="link"), source=source)
            stop = asyncio.Event()
            task = asyncio.create_task(mode.run(transport, None, stop))
            await asyncio.sleep(0.5)
            status = mode.status()
            stop.set()
            await task
            return status

    status = asyncio.run(scenario())
    sent = [messages.decode(p) for _, p in transport.sent]
    assert {m.kind for m in sent} == {"live_beats"} and len(sent) >= 2
    first = sent[0]
    assert (first.times_us[1] - first.times_us[0]) == 400_000
    assert status["source"] == "link" and "overflows" not in status
    assert sent[-1].times_us == []


def test_live_threads_carry_os_names():
    """Live mode's threads show under their own names in /proc (top -H, bench/live.py
    --cost): the calling thread by prctl, the others by their threading names."""
    import os

    from gridcast.host.live.thread_name import name_python_threads, set_os_thread_name

    def comms() -> set[str]:
        tasks = f"/proc/{os.getpid()}/task"
        return {open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks)}

    release = threading.Event()
    named = threading.Thread(target=lambda: (set_os_thread_name("gc-test-self"), release.wait(5)))
    other = threading.Thread(target=release.wait, args=(5,), name="gc-test-other-thread")
    named.start()
    other.start()
    try:
        deadline = time.monotonic() + 5
        while "gc-test-self" not in comms() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "gc-test-self" in comms()
        assert name_python_threads() >= 2
        assert "gc-test-other-t" in comms()  # cut to 15 bytes, as Linux keeps it
    finally:
        release.set()
        named.join()
        other.join()


def _model(next_us: float, period_us: float, answered: list[int], last_gap_us: float = 0.0):
    """A TrackerBeatSource whose model is set by hand (no audio): the next beat, the
    period, the beats of its previous answer (what the devices hold or fired)."""
    from gridcast.agent.tracker_beat_source import TrackerBeatSource

    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    source._next_us, source._period_us = next_us, period_us
    source._locked_until_us = 1e12
    source._answer = answered
    source._last_gap_us = last_gap_us
    return source


def test_a_held_beat_the_tracker_moved_too_far_back_stays_where_held():
    """The devices hold a beat at 1.010 s; the tracker's phase jumps and puts it at
    0.955 s, 45 ms behind now: past the 40 ms catch-up. The held beat is kept (late
    rather than lost); with nothing held near it, it is not given."""
    now = 1_000_000
    held = _model(1_455_000, 500_000, [510_000, 1_010_000, 1_510_000])
    assert [b.at_us for b in held.upcoming(now, 1_000_000)] == [1_010_000, 1_455_000, 1_955_000]
    fired = _model(1_455_000, 500_000, [510_000, 1_960_000])
    assert [b.at_us for b in fired.upcoming(now, 1_000_000)] == [1_455_000, 1_955_000]


def test_the_no_double_flash_gap_follows_the_tracker_beats_when_its_tempo_doubles():
    """The devices fired a beat at 1.000 s; the tracker's tempo read-out doubled (period
    1 s) but its beats still come 0.5 s apart: its beat at 1.500 s is given. A beat
    0.25 s after the one fired is still held back."""
    now = 1_510_000
    source = _model(2_500_000, 1_000_000, [1_000_000], last_gap_us=500_000)
    assert [b.at_us for b in source.upcoming(now, 1_500_000)] == [1_500_000, 2_500_000]
    close = _model(2_250_000, 1_000_000, [1_000_000], last_gap_us=500_000)
    assert [b.at_us for b in close.upcoming(1_260_000, 1_500_000)] == [2_250_000]

"""Sound on the agent's clock, proven in a virtual room (a real jackd with the dummy backend).

Each test starts its own JACK server, plays through PortAudio's JACK host API with
gridcast's AudioOutput, and records what was played with a JACK-Client recorder that
knows when every sample is heard (JACK frame times mapped onto the agent clock).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest
from scipy.signal import resample_poly

from gridcast.agent.audio import dac_clock
from gridcast.agent.audio import room as room_module
from gridcast.agent.audio.capture import Capture, RoomRecorder
from gridcast.agent.audio.clicks import click_train, find_onsets, match_onsets
from gridcast.agent.audio.dac_clock import DacClock, read_clocks
from gridcast.agent.audio.errors import AudioOutputError, RoomError
from gridcast.agent.audio.output import AudioOutput, OutputReport, output_devices
from gridcast.agent.audio.room import JACK_HOST_API, VirtualRoom
from gridcast.agent.clock import now_us

# Measured in docs/audio.md: clicks land 20-200 µs early (PortAudio's JACK host API
# stamps a buffer when its callback runs, not when the cycle starts). 0.5 ms is the
# target of issue 14 for one click.
MAX_CLICK_ERROR_US = 500.0
LEAD_US = 300_000  # schedule far enough ahead that the stream is surely running
# JACK buffers of 21 ms: accuracy does not depend on them (each buffer has its DAC time),
# but on a shared 2-core VM 5 ms buffers (-p 256) take an xrun now and then, and an
# xrun disturbs the room's own clock for seconds (docs/audio.md; bench/audio_room.py
# measures -p 256).
PERIOD = 1024
ATTEMPTS = 3
T = TypeVar("T", bound=tuple)


def play_and_capture(room: VirtualRoom, signal: np.ndarray, rate_hz: int, *,
                     follow_clock: bool = True, assume_rate_hz: float | None = None,
                     ) -> tuple[float, OutputReport, Capture, float | None]:
    """Play ``signal`` into the room from now + LEAD_US; return (start, report, capture,
    the output's own idea of when sample 0 is heard)."""
    with AudioOutput(room.output_device, follow_clock=follow_clock,
                     assume_rate_hz=assume_rate_hz) as output:
        recorder = RoomRecorder(room.name, max_seconds=len(signal) / rate_hz + 5.0).start()
        start = output.play(signal, rate_hz, start_us=now_us() + LEAD_US)
        assert output.wait_done(len(signal) / rate_hz + 10.0)
        capture = recorder.stop()
        return start, output.report(), capture, output.heard_us(0, rate_hz)


def without_room_xruns(run: Callable[[], T]) -> T:
    """``run()``, again (up to ATTEMPTS in all) while JACK reports xruns in the room, to
    the recorder or to the output (which opens first, so it alone sees one while the
    recorder connects).

    On a shared 2-core VM a busy neighbour can stall even real-time threads for tens of
    ms (docs/audio.md); JACK then re-anchors its clock, and nothing about the output can
    be judged. Any other failure fails at once.
    """
    xruns = []
    for _ in range(ATTEMPTS):
        result = run()
        capture = next(part for part in result if isinstance(part, Capture))
        output = next((part.xruns for part in result if isinstance(part, OutputReport)), 0)
        if capture.xruns == 0 and output == 0:
            return result
        xruns.append(capture.xruns + output)
    pytest.fail(f"the room had xruns in every attempt ({xruns}): the machine is too busy "
                "to judge timing; re-run when it is calmer")


def click_errors_us(rate_hz: int, seconds: float, room_rate_hz: int = 48000,
                    assume_rate_hz: float | None = None) -> tuple[np.ndarray, OutputReport]:
    onsets_s = np.arange(0.1, seconds - 0.1, 0.25)
    signal, indices = click_train(rate_hz, onsets_s, seconds)

    def attempt() -> tuple[float, OutputReport, Capture, float | None]:
        with VirtualRoom(rate_hz=room_rate_hz, period_frames=PERIOD) as room:
            return play_and_capture(room, signal, rate_hz, assume_rate_hz=assume_rate_hz)

    start, report, capture, _ = without_room_xruns(attempt)
    heard = capture.heard_us(find_onsets(capture.samples, capture.rate_hz))
    errors, missing, extra = match_onsets(heard, start + indices / rate_hz * 1e6)
    assert (missing, extra) == (0, 0), f"clicks missing {missing}, extra {extra}"
    return errors, report


@pytest.mark.parametrize("source_rate", [48000, 44100])
def test_clicks_are_heard_when_scheduled(source_rate):
    errors, report = click_errors_us(source_rate, seconds=6.0)
    assert report.rate_hz == 48000  # a 44.1 kHz buffer is resampled, not refused
    worst = np.abs(errors).max()
    assert worst <= MAX_CLICK_ERROR_US, f"worst click {worst:.0f} µs off: {errors.round(0)}"
    assert report.first_sound_latency_ms == pytest.approx(LEAD_US / 1e3, abs=1.0)


def test_first_sound_is_heard_within_500_ms_of_play():
    # play() on a closed output: it prepares, opens the stream and starts DEFAULT_LEAD_MS
    # later. The recorder can only join once the stream exists (its child process starts
    # in about 0.5-1 s), so the room checks the clicks that follow on the same schedule.
    onsets_s = np.arange(0.0, 4.0, 0.25)
    signal, indices = click_train(48000, onsets_s, 4.0)

    def attempt() -> tuple[int, float, OutputReport, Capture]:
        with VirtualRoom(period_frames=PERIOD) as room:
            output = AudioOutput(room.output_device)
            called = now_us()
            start = output.play(signal, 48000)
            recorder = RoomRecorder(room.name, max_seconds=5.0).start()
            assert output.wait_done(5.0)
            capture = recorder.stop()
            output.close()
            return called, start, output.report(), capture

    called, start, report, capture = without_room_xruns(attempt)
    assert start - called <= 500_000
    assert report.first_sound_us == pytest.approx(start, abs=25.0)  # to the frame
    heard = capture.heard_us(find_onsets(capture.samples, capture.rate_hz))
    expected = start + indices / 48000 * 1e6
    errors, _, extra = match_onsets(heard, expected[expected > capture.heard_us(0)])
    assert errors.size >= 8 and extra == 0
    assert np.abs(errors).max() <= MAX_CLICK_ERROR_US


def test_a_device_clock_100_ppm_off_is_measured_and_followed():
    # The room runs at 48005 Hz while the output prepares 48000 Hz: a card 104 ppm fast.
    errors, report = click_errors_us(44100, seconds=10.0, room_rate_hz=48005,
                                     assume_rate_hz=48000)
    true_ppm = (48005 / 48000 - 1) * 1e6
    # Fitted over 10 s of callbacks that run up to ms late: a few ppm of noise on a calm
    # machine, more on a busy one; the clicks below are what the listener gets.
    assert report.drift_ppm == pytest.approx(true_ppm, abs=20.0), report
    worst = np.abs(errors).max()
    assert worst <= MAX_CLICK_ERROR_US, f"worst click {worst:.0f} µs off: {errors.round(0)}"


def test_15_s_play_is_sample_exact_without_xruns():
    """The 10-minute figure is bench/audio_room.py's; the suite keeps 15 s."""
    rate = 48000
    rng = np.random.default_rng(14)
    signal = (0.3 * rng.standard_normal(15 * rate)).astype(np.float32)
    signal[0] = 0.9  # a marker: the first sample that is not silence

    def attempt() -> tuple[float, OutputReport, Capture, float | None]:
        with VirtualRoom(rate_hz=rate, period_frames=PERIOD) as room:
            return play_and_capture(room, signal, rate, follow_clock=False)

    start, report, capture, heard_zero = without_room_xruns(attempt)
    first = int(np.flatnonzero(capture.samples)[0])
    played = capture.samples[first:first + signal.size]
    # Nothing dropped, repeated or altered: the room heard exactly the buffer.
    assert played.size == signal.size and np.array_equal(played, signal)
    assert (report.xruns, capture.xruns, capture.dropped_buffers) == (0, 0, 0)
    assert capture.gaps() == []
    # Without clock following the output reports where sample 0 landed; so does the room.
    assert heard_zero is not None
    assert abs(float(capture.heard_us(first)) - heard_zero) <= MAX_CLICK_ERROR_US
    # The start is rounded to a whole frame (±10 µs) by the line known at the first
    # callback; the line then settles (by ~100 µs, docs/audio.md).
    assert abs(heard_zero - start) <= 200.0


def test_an_unknown_output_device_lists_the_devices_that_exist():
    with VirtualRoom() as room:
        with pytest.raises(AudioOutputError) as caught:
            AudioOutput("no such speaker")
        message = str(caught.value)
        assert "'no such speaker'" in message and JACK_HOST_API in message
        assert any(device in message for device in output_devices())
        AudioOutput(room.output_device).close()  # the listed device itself works


def test_without_a_jack_server_the_error_says_what_to_start():
    with pytest.raises(AudioOutputError) as caught:
        AudioOutput(f"system, {JACK_HOST_API}")
    assert "output devices:" in str(caught.value)
    if not output_devices():  # a machine without a sound card, as the build machines
        assert "jackd" in str(caught.value)


def test_missing_jackd_names_the_package(monkeypatch):
    monkeypatch.setattr(room_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(room_module.os.path, "exists", lambda path: False)
    with pytest.raises(RoomError, match="jackd2"):
        VirtualRoom().start()


def test_the_recorder_needs_something_playing():
    with VirtualRoom() as room, pytest.raises(RoomError, match="nothing plays"):
        RoomRecorder(room.name).start()


def test_onsets_are_found_to_a_fraction_of_a_sample_after_resampling():
    signal, indices = click_train(44100, np.arange(0.05, 0.95, 0.1), 1.0)
    resampled = resample_poly(signal, 160, 147)  # 44.1 -> 48 kHz
    found = find_onsets(resampled, 48000)
    assert found.size == indices.size
    np.testing.assert_array_equal(find_onsets(signal, 44100), indices)
    # The resampler's overshoot (Gibbs, ~9 %) lifts the peak, so half of it is reached
    # about 0.1 sample (2 µs) late.
    np.testing.assert_allclose(found, indices * 48000 / 44100, atol=0.15)


def test_dac_clock_fits_drift_and_recovers_from_a_skipped_cycle():
    rng = np.random.default_rng(1)
    clock = DacClock(48000)
    start_us, skipped, errors = 1.7e15, 0, []
    for k in range(48000 * 30 // 256):
        frame = k * 256
        if k == 3000:
            skipped = 256  # an xrun: from here on frames are heard one buffer later
        true_us = start_us + (frame + skipped) * 1e6 / 48000 / (1 + 100e-6)
        # Callbacks run 100 µs late at best, often more, sometimes by milliseconds.
        late_us = 100.0 + rng.exponential(100.0) * (20.0 if rng.random() < 0.01 else 1.0)
        clock.add(frame, true_us + late_us)
        errors.append(clock.heard_us(frame) - true_us)
    settled = np.array(errors[600:3000] + errors[3200:])
    assert clock.drift_ppm == pytest.approx(100.0, abs=1.0)
    assert clock.shifts == 1
    # The line sits on the shortest delay (100 µs), not on the typical one (200 µs).
    assert np.all((settled > 80.0) & (settled < 130.0))


@pytest.mark.parametrize("shift_ms", [1.5, 3.0, 6.0, 9.0, 21.3])
def test_dac_clock_moves_with_a_shift_shorter_than_a_buffer(shift_ms):
    # JACK's dummy driver (and a card's driver) re-anchors its cycles after a stall:
    # frames then sit later against time by however long the stall outlasted the
    # cycle's slack, often less than half of a 1024-frame buffer. Left in one segment
    # such a shift tilted the slope (a card 104 ppm fast read as 40 ppm slow at 6 ms)
    # and held the line early by up to the shift for tens of seconds.
    rng = np.random.default_rng(2)
    clock, errors, period = DacClock(48000), [], 1024
    for k in range(48000 * 60 // period):
        frame = k * period
        shifted_us = shift_ms * 1e3 if frame >= 35 * 48000 else 0.0
        true_us = 1.7e15 + frame * 1e6 / 48000 / (1 + 104e-6) + shifted_us
        late_us = 100.0 + rng.exponential(100.0) * (20.0 if rng.random() < 0.01 else 1.0)
        clock.add(frame, true_us + late_us)
        errors.append(clock.heard_us(frame) - true_us - 100.0)
    after = np.abs(np.array(errors[int(35.5 * 48000 / period):]))
    assert clock.shifts == 1
    assert clock.drift_ppm == pytest.approx(104.0, abs=2.0)
    assert after.max() < 150.0, f"the line sat up to {after.max() / 1e3:.2f} ms off after the shift"


def _stalled_stream(clock: DacClock, mark: bool, spurious_every: int = 0) -> list[float]:
    """A card 104 ppm fast whose frames move 0.2-0.8 ms later at an xrun every 2 s (under
    DacClock's 1 ms shift), 1024-frame callbacks at 48 kHz for 14 s; ``mark`` tells the
    clock about each flagged callback, ``spurious_every`` flags that many callbacks more
    with no move (JACK flags every client when one is late). The line's error from 0.5 s
    after each move (and after the first 2 s), µs."""
    rng = np.random.default_rng(4)
    period, moved, errors, flagged_at = 1024, 0.0, [], 0  # the first 2 s fit the line
    for k in range(48000 * 14 // period):
        frame = k * period
        flag = k > 0 and k % 94 == 0  # about every 2 s
        if flag:
            moved += rng.uniform(200.0, 800.0)
        spurious = spurious_every and k % spurious_every == 0 and not flag
        true_us = 1.7e15 + frame * 1e6 / 48000 / (1 + 104e-6) + moved
        if mark and (flag or spurious):
            clock.mark_xrun()
        if flag:
            flagged_at = k
        clock.add(frame, true_us + 100.0 + rng.exponential(100.0))
        if k - flagged_at > 24:
            errors.append(clock.heard_us(frame) - true_us - 100.0)
    return errors


def test_a_move_too_small_to_see_is_taken_at_an_xrun_flag():
    # Moves under 1 ms at an xrun, left in one segment, tilted the slope: CI run 47 read a
    # room server 104 ppm fast as 65 ppm after three xruns 2 s apart.
    unmarked = DacClock(48000)
    _stalled_stream(unmarked, mark=False)
    assert abs(unmarked.drift_ppm - 104.0) > 30.0  # what the flag is for
    marked = DacClock(48000)
    errors = np.abs(_stalled_stream(marked, mark=True))
    assert marked.drift_ppm == pytest.approx(104.0, abs=10.0)
    assert marked.shifts == 6  # one per move, 0.2-0.8 ms each
    assert errors.max() < 150.0, f"the line sat up to {errors.max():.0f} µs off"
    # Flags without a move (another client late) move nothing.
    noisy = DacClock(48000)
    errors = np.abs(_stalled_stream(noisy, mark=True, spurious_every=13))
    assert noisy.shifts == 6
    assert noisy.drift_ppm == pytest.approx(104.0, abs=10.0)
    assert errors.max() < 150.0


def test_stalls_of_the_room_server_leave_the_card_drift_measured():
    # A stop of jackd that outlasts a cycle's slack makes the dummy driver re-anchor its
    # cycles (an xrun): frames then sit later against time by however long it overran,
    # a few ms or more than a buffer. Stops of 24-34 ms until JACK reported three.
    rng = np.random.default_rng(3)
    with VirtualRoom(rate_hz=48005, period_frames=PERIOD) as room, \
            AudioOutput(room.output_device, assume_rate_hz=48000) as output:
        assert room.pid is not None
        for _ in range(12):
            time.sleep(2.0)
            if output.report().xruns >= 3:
                break
            os.kill(room.pid, signal.SIGSTOP)
            time.sleep(rng.uniform(0.024, 0.034))
            os.kill(room.pid, signal.SIGCONT)
        # The slope is fitted within the segments between shifts: 2 s ones pin it to
        # about ±25 ppm (block minima wobble by tens of µs), a 6 s one to about ±8.
        time.sleep(6.0)
        report = output.report()
    assert report.xruns >= 3 and report.timeline_shifts >= 1, report
    assert report.drift_ppm == pytest.approx((48005 / 48000 - 1) * 1e6, abs=20.0), report


class _StallingStream:
    """A stream whose clock runs 1 s behind the agent's, and whose ``time`` read is where
    a callback may stall (a GIL switch to another thread): the agent clock moves on by
    ``stall_us`` before the stream's clock is read."""

    def __init__(self, agent: list[int]) -> None:
        self.agent = agent
        self.stall_us = 0

    @property
    def time(self) -> float:
        self.agent[0] += self.stall_us
        return self.agent[0] / 1e6 - 1.0


def test_a_stall_beside_the_clock_reads_never_makes_a_bound_early(monkeypatch):
    agent = [0]
    monkeypatch.setattr(dac_clock, "now_us", lambda: agent[0])
    stream, clock, errors = _StallingStream(agent), DacClock(48000), []
    start_us, heard_after_us = 1_000_000, 10_000
    for k in range(48000 * 10 // 256):
        frame = k * 256
        true_us = start_us + frame * 1e6 / 48000 + heard_after_us
        agent[0] = start_us + round(frame * 1e6 / 48000) + 100  # the callback: 100 µs late
        stream.stall_us = 3000 if k % 50 == 7 else 0
        now, stream_now = read_clocks(stream, None)
        dac_time = true_us / 1e6 - 1.0  # PortAudio's DAC time, on the stream's clock
        clock.add(frame, now + (dac_time - stream_now) * 1e6)
        errors.append(clock.heard_us(frame) - true_us)
    # Agent clock first, a stall made its bound 3 ms early: DacClock took that for a
    # skipped cycle and moved the line.
    assert clock.shifts == 0
    assert min(errors) > -1.0 and max(errors[100:]) < 2.0

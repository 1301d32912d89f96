"""gridcast calibrate, in the virtual room: a JACK dummy server whose "air" is a loopback
client (agent/audio/loopback.py) that feeds what PortAudio plays back into PortAudio's
input a known time later. There is no microphone here; that loopback is the room.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest

from gridcast.agent import calibration
from gridcast.agent import config as agent_config
from gridcast.agent.audio.errors import RoomError
from gridcast.agent.audio.loopback import RoomLoopback
from gridcast.agent.audio.room import VirtualRoom
from gridcast.agent.calibration import CalibrationError, RoomCalibration, store_room_latency
from gridcast.hil.faults import stall_process
from gridcast.host.cli import main

KNOWN_DELAY_MS = 23.0
ACCURACY_MS = 0.5  # issue 14's target, for each run
RUNS = 3  # bench/calibrate.py makes 10
PERIOD = 1024  # 21 ms JACK buffers: see tests/test_audio_room.py (accuracy does not depend on it)
FAST = ["--repeats", "4", "--max-latency-ms", "100"]


@pytest.fixture(scope="module")
def room() -> Iterator[VirtualRoom]:
    try:
        with VirtualRoom(period_frames=PERIOD) as started:
            yield started
    except RoomError as exc:  # pragma: no cover - a machine without jackd
        pytest.skip(str(exc))


def _calibrate_json(room: VirtualRoom, config: str, capsys: pytest.CaptureFixture[str],
                    attempts: int = 3) -> dict:
    """One calibration's JSON. Run again (up to ``attempts`` in all) only when it failed
    because the audio devices skipped (xruns on a busy shared VM: docs/audio.md); any
    other failure fails at once."""
    errors = []
    for _ in range(attempts):
        code = main(["calibrate", "--output", room.output_device, "--input",
                     room.output_device, "--config", config, "--json", *FAST])
        captured = capsys.readouterr()
        if code == 0:
            return dict(json.loads(captured.out))
        assert "skipped" in captured.err, captured.err
        errors.append(captured.err.strip())
    pytest.fail(f"the devices skipped in every attempt: {errors}")


def test_known_delay_is_measured_in_each_run(room: VirtualRoom, tmp_path, capsys) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('# the stage agent\n[agent]\nbroker = "mqtt://10.0.0.2:1883"\n'
                      'port = 8750  # the API\n')
    with RoomLoopback(room.name, KNOWN_DELAY_MS):
        measured = []
        for _ in range(RUNS):
            result = _calibrate_json(room, str(config), capsys)
            measured.append(result["room_latency_ms"])
            assert result["stored_in"] == str(config)
            assert all(score > 0.9 for score in result["scores"])
            # The split PortAudio gives in this room: 2 periods out, 1 period in.
            assert result["output_latency_ms"] == pytest.approx(2 * PERIOD / 48, abs=0.01)
            assert result["input_latency_ms"] == pytest.approx(PERIOD / 48, abs=0.01)
            assert result["round_trip_ms"] == pytest.approx(
                result["output_latency_ms"] + result["room_latency_ms"]
                + result["input_latency_ms"])
    errors = [m - KNOWN_DELAY_MS for m in measured]
    assert all(abs(e) <= ACCURACY_MS for e in errors), errors
    text = config.read_text()
    stored = tomllib.loads(text)["agent"]
    assert stored["room_latency_ms"] == pytest.approx(measured[-1], abs=0.001)
    assert stored["broker"] == "mqtt://10.0.0.2:1883" and stored["port"] == 8750
    assert text.startswith("# the stage agent\n[agent]\n") and "# the API" in text
    assert text.count("room_latency_ms") == 1  # replaced, not appended, on each run


def test_no_click_heard_stores_nothing(room: VirtualRoom, tmp_path, capsys) -> None:
    # No loopback: PortAudio's input is the dummy backend's silent capture port.
    config = tmp_path / "agent.toml"
    assert main(["calibrate", "--output", room.output_device, "--input", room.output_device,
                 "--config", str(config), *FAST]) == 1
    err = capsys.readouterr().err
    assert "gridcast: the microphone heard nothing" in err
    assert not config.exists()


def test_repeats_that_disagree_store_nothing(room: VirtualRoom, tmp_path, capsys) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\nroom_latency_ms = 7.0\n")
    # The "microphone" walks away: 5 ms more delay per second, so the bursts (0.37 s
    # apart) disagree by about 5 ms.
    with RoomLoopback(room.name, KNOWN_DELAY_MS, drift_ms_per_s=5.0):
        assert main(["calibrate", "--output", room.output_device, "--input",
                     room.output_device, "--config", str(config), *FAST]) == 1
    err = capsys.readouterr().err
    assert "gridcast: the repeats disagree" in err and "nothing stored" in err
    assert config.read_text() == "[agent]\nroom_latency_ms = 7.0\n"


def test_a_stall_during_the_measurement_stores_nothing(room: VirtualRoom, tmp_path,
                                                       capsys) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\nroom_latency_ms = 7.0\n")
    assert room.pid is not None
    with RoomLoopback(room.name, KNOWN_DELAY_MS):
        # The room's server frozen for 100 ms (about 5 of its cycles) while it records: a
        # VM stall, which JACK reports as an xrun; its clocks ring for seconds after.
        stalled = stall_process(room.pid, 100.0, after_s=0.8)
        code = main(["calibrate", "--output", room.output_device, "--input",
                     room.output_device, "--config", str(config), *FAST])
        stalled.join()
    assert code == 1
    err = capsys.readouterr().err
    assert "the audio devices skipped" in err and "nothing stored" in err
    assert config.read_text() == "[agent]\nroom_latency_ms = 7.0\n"


def test_unknown_input_device_names_the_ones_that_exist(room: VirtualRoom, tmp_path,
                                                        capsys) -> None:
    assert main(["calibrate", "--input", "no such microphone", "--config",
                 str(tmp_path / "a.toml")]) == 1
    err = capsys.readouterr().err
    assert "no input device 'no such microphone'" in err and "JACK Audio Connection Kit" in err


def _result(value_ms: float) -> RoomCalibration:
    return RoomCalibration(room_latency_ms=value_ms, repeats_ms=[value_ms] * 3, spread_ms=0.0,
                           tolerance_ms=1.0, round_trip_ms=0.0, output_latency_ms=0.0,
                           input_latency_ms=0.0, stream_output_latency_ms=0.0,
                           stream_input_latency_ms=0.0, scores=[1.0] * 3, rate_hz=48000,
                           output_device="o", input_device="i")


@pytest.mark.parametrize(("before", "table"), [
    ("", "agent"),
    ('broker = "mqtt://h:1883"\n', None),  # top-level settings: config.load reads them
    ('[agent]\nport = 9000\nroom_latency_ms = 1.5  # old\n\n[other]\nx = 1\n', "agent"),
    ('[other]\nx = 1\n', "agent"),
])
def test_store_keeps_the_rest_of_the_config(tmp_path, before: str, table: str | None) -> None:
    path = tmp_path / "agent.toml"
    if before:
        path.write_text(before)
    store_room_latency(str(path), _result(12.3456))
    after = tomllib.loads(path.read_text())
    settings = after[table] if table else after
    assert settings["room_latency_ms"] == 12.346
    old = tomllib.loads(before)
    for key, value in (old.get(table, {}) if table else old).items():
        if key != "room_latency_ms":
            assert settings[key] == value
    if "other" in old:
        assert after["other"] == {"x": 1}
    assert agent_config.load(str(path), environ={}).room_latency_ms == 12.346


def test_store_refuses_a_broken_config_and_leaves_it(tmp_path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[agent\nport = 1\n")
    with pytest.raises(CalibrationError, match="not valid TOML"):
        store_room_latency(str(path), _result(5.0))
    assert path.read_text() == "[agent\nport = 1\n"
    assert [p for p in os.listdir(tmp_path) if p != "agent.toml"] == []


def test_burst_layout_has_one_self_match() -> None:
    signal, starts, burst = calibration.click_bursts(48000, 3, 0.5)
    assert signal.size > starts[-1] + burst.size
    # The burst correlates with itself at one lag only: no other lag is close to the peak.
    corr = np.correlate(burst, burst, mode="full")
    peak = corr.argmax()
    others = np.delete(corr, range(peak - 48, peak + 49))
    assert others.max() < 0.3 * corr[peak]


class _LinearClock:
    """Frame n of a stream is at t0 + n / rate (agent µs): what DacClock fits."""

    def __init__(self, t0_us: float, rate_hz: float) -> None:
        self.t0_us, self.rate_hz = t0_us, rate_hz

    def heard_us(self, frame: float) -> float:
        return self.t0_us + frame / self.rate_hz * 1e6

    def frame_at(self, agent_us: float) -> float:
        return (agent_us - self.t0_us) * self.rate_hz / 1e6


def _recorded(recording: np.ndarray, out_rate: int, in_rate: int | None = None,
              in_start_us: float = 0.0) -> SimpleNamespace:
    """A finished measurement whose input heard ``recording`` at ``in_rate`` (default the
    output's), its frame 0 ``in_start_us`` after the output's frame 0."""
    in_rate = in_rate or out_rate
    return SimpleNamespace(recording=recording.astype(np.float32), in_frames=recording.size,
                           in_xruns=0, out_xruns=0, out_clock=_LinearClock(1e6, out_rate),
                           in_clock=_LinearClock(1e6 + in_start_us, in_rate))


def test_an_input_at_another_rate_is_measured_through_the_resampled_burst() -> None:
    # The output plays at 48 kHz; the microphone records at 44.1 kHz, starting 3.7 ms
    # after the output's first frame; the room delays by 1104 output frames (23.0 ms).
    signal, starts, burst = calibration.click_bursts(48000, 3, 0.4)
    delayed = np.zeros(signal.size + 48000, np.float32)
    delayed[1104:1104 + signal.size] = signal
    from scipy.signal import resample_poly

    heard = resample_poly(delayed, 147, 160)  # 48 kHz -> 44.1 kHz
    skip = round(0.0037 * 44100)  # the input's frame 0 is output time 3.7 ms (rounded)
    streams = _recorded(heard[skip:], 48000, 44100, skip / 44100 * 1e6)
    latencies, scores = calibration._find_bursts(streams, starts, burst, 48000, 44100, 100.0)
    assert min(scores) > 0.95
    assert latencies == pytest.approx([23.0] * 3, abs=0.01)


@pytest.mark.parametrize("reverb_s, drr_db, crowd_snr_db", [
    (0.8, 0.0, None),    # a club, at the critical distance
    (1.6, -6.0, None),   # a hall, the microphone far back: the tail 6 dB over the direct sound
    (2.5, -8.0, 10.0),   # a church, and people talking 10 dB under the clicks
])
def test_a_reverberant_room_is_measured_by_its_direct_sound(reverb_s, drr_db, crowd_snr_db):
    """The clicks' tails ring between them; the latency is the direct sound's, and the
    ringing does not make calibrate refuse (before 2026-12-04 the hall and the church
    scored 0.44 and 0.41, under MIN_SCORE, and stored nothing)."""
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics

    signal, starts, burst = calibration.click_bursts(48000, 4, 0.8)
    delayed = np.zeros(signal.size + 48000, np.float32)
    delayed[1104:1104 + signal.size] = signal  # 23.0 ms of air and converters
    heard = RoomAcoustics(reverb_s, drr_db, crowd_snr_db, seed=2).apply(delayed, 48000)
    latencies, scores = calibration._find_bursts(_recorded(heard, 48000), starts, burst,
                                                 48000, 48000, 100.0)
    assert latencies == pytest.approx([23.0] * 4, abs=0.05)
    assert min(scores) > 0.9


@pytest.mark.parametrize("what", ["hiss", "a crowd clapping"])
def test_a_recording_without_the_clicks_is_refused(what):
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics

    signal, starts, burst = calibration.click_bursts(48000, 4, 0.8)
    n = signal.size + 48000
    noise = (np.random.default_rng(3).standard_normal(n) if what == "hiss"
             else RoomAcoustics(crowd_snr_db=0.0, seed=3).crowd(n, 48000))
    with pytest.raises(CalibrationError, match="no click found for burst 1 of 4") as caught:
        calibration._find_bursts(_recorded(0.1 * noise, 48000), starts, burst, 48000, 48000,
                                 500.0)
    assert "move the microphone nearer the speaker" in str(caught.value)


def test_play_uses_the_calibrated_room_latency(tmp_path, monkeypatch) -> None:
    """What calibrate stores is what `gridcast play` adds (the flag overrides it; with no
    config anywhere it is 0)."""
    import argparse

    from gridcast.host.cli.show import room_latency_ms

    path = tmp_path / "gridcast-agent.toml"
    store_room_latency(str(path), _result(23.1234))
    monkeypatch.delenv("GRIDCAST_ROOM_LATENCY_MS", raising=False)
    assert room_latency_ms(argparse.Namespace(room_latency_ms=None, config=str(path))) == 23.123
    assert room_latency_ms(argparse.Namespace(room_latency_ms=4.0, config=str(path))) == 4.0
    monkeypatch.chdir(tmp_path)  # the default file name, found in the working folder
    assert room_latency_ms(argparse.Namespace(room_latency_ms=None, config=None)) == 23.123
    path.unlink()
    assert room_latency_ms(argparse.Namespace(room_latency_ms=None, config=None)) == 0.0

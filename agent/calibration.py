"""Measure the room: how long after PortAudio's DAC time the sound reaches a microphone.

``measure_room`` plays bursts of clicks on an output device and records them on an
input device at the same time (two sounddevice streams). Each callback maps its
buffer onto the agent's timeline the way ``AudioOutput`` does: the agent clock read
next to the stream clock, plus PortAudio's own DAC time (output) or ADC time (input)
for that buffer, fitted per stream by ``DacClock`` (lower envelope: a callback can be
late, never early). Each burst is found in the recording by cross-correlation with
what was played, to a fraction of a sample (parabola through the peak), and

    room latency = ADC time of the burst's arrival − DAC time of its departure

is what PortAudio's figures do not account for: the speaker, the air, the microphone
and whatever latency a driver does not report. The callback-to-callback round trip is
split as PortAudio allows: output latency (DAC − callback time) + room latency + input
latency (callback time − ADC). PortAudio cannot tell an unreported *input* latency
from the air, so the room latency includes it; on the virtual room both are exact.

Bursts are irregular (0, 37, 89, 163 ms) so a burst correlates with itself at one lag
only, and repeats are further apart than ``max_latency_ms`` so no burst can be taken
for its neighbour. An input that cannot run at the output's rate records at its own,
and the burst is resampled to it for the correlation. Repeats that disagree by more
than ``tolerance_ms``, or a burst that is not in the recording, raise
CalibrationError: nothing is stored.

``store_room_latency`` writes ``room_latency_ms`` into the agent's TOML config (the
``[agent]`` table), atomically and keeping every other line as it was.
"""

from __future__ import annotations

import datetime
import re
import threading
import tomllib
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import correlate, resample_poly

from gridcast.agent.audio.dac_clock import DacClock, read_clocks
from gridcast.host.atomic_file import write_atomically
from gridcast.protocol.errors import GridcastError

BURST_MS = (0.0, 37.0, 89.0, 163.0)  # click offsets within one burst: no self-similar lag
CLICK_MS = 1.0  # a Hann-shaped click: its correlation peak is smooth, so a parabola fits it
LEVEL = 0.5
LEAD_S = 0.5  # silence first: streams settle, the room's connections are made
MIN_SCORE = 0.5  # normalized cross-correlation of a found burst (1.0: an exact copy)
SILENCE = 1e-4  # a recording whose peak is below this heard nothing at all
MAX_ROOM_LATENCY_MS = 2000.0  # what the config accepts


class CalibrationError(GridcastError):
    """The room could not be measured, or the repeats disagree; nothing was stored."""


@dataclass
class RoomCalibration:
    """One calibration. Times in ms; room_latency_ms is what the player adds."""

    room_latency_ms: float  # median of the repeats: DAC time -> heard at the microphone
    repeats_ms: list[float]
    spread_ms: float  # max - min of the repeats
    tolerance_ms: float
    round_trip_ms: float  # output callback -> input callback: output + room + input
    output_latency_ms: float  # PortAudio: outputBufferDacTime - currentTime (median)
    input_latency_ms: float  # PortAudio: currentTime - inputBufferAdcTime (median)
    stream_output_latency_ms: float  # PortAudio's stream.latency figures at open
    stream_input_latency_ms: float
    scores: list[float]  # normalized correlation of each burst found, at its clicks
    rate_hz: int  # the output's; the input's is input_rate_hz
    output_device: str
    input_device: str
    input_xruns: int = 0
    output_xruns: int = 0
    input_rate_hz: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def click_bursts(rate_hz: int, repeats: int, every_s: float,
                 lead_s: float = LEAD_S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The played signal, the sample where each burst starts, and one burst alone."""
    width = max(3, round(CLICK_MS * 1e-3 * rate_hz))
    click = (LEVEL * np.hanning(width)).astype(np.float32)
    offsets = np.round(np.asarray(BURST_MS) * 1e-3 * rate_hz).astype(np.int64)
    burst = np.zeros(int(offsets[-1]) + width, np.float32)
    for offset in offsets:
        burst[offset:offset + width] = click
    starts = (np.round((lead_s + np.arange(repeats) * every_s) * rate_hz)).astype(np.int64)
    signal = np.zeros(int(starts[-1]) + round(every_s * rate_hz), np.float32)
    for start in starts:
        signal[start:start + burst.size] = burst
    return signal, starts, burst


def input_devices() -> list[str]:
    """Every input device PortAudio sees now, as ``[index] name (host API, N in)``."""
    import sounddevice as sd

    apis = sd.query_hostapis()
    return [f"[{i}] {d['name']} ({apis[d['hostapi']]['name']}, {d['max_input_channels']} in)"
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def _resolve_input(device: int | str | None) -> dict[str, Any]:
    import sounddevice as sd

    try:
        return dict(sd.query_devices(device, "input"))
    except (ValueError, sd.PortAudioError) as exc:
        listing = "; ".join(input_devices()) or "none (no microphone, no JACK server running)"
        wanted = "default input device" if device is None else f"input device {device!r}"
        raise CalibrationError(f"no {wanted} ({str(exc).splitlines()[0]}); input devices: "
                               f"{listing}") from exc


class _Streams:
    """An output stream playing ``signal`` from its first frame and an input stream
    recording, each mapping its frames onto the agent clock (see the module doc)."""

    def __init__(self, signal: np.ndarray, record_frames: int) -> None:
        self.signal = signal
        self.recording = np.zeros(record_frames, np.float32)
        self.out_frames = 0
        self.in_frames = 0
        self.out_latency_s: list[float] = []
        self.in_latency_s: list[float] = []
        self.out_xruns = self.in_xruns = 0
        self.done = threading.Event()
        self.out_clock: DacClock | None = None
        self.in_clock: DacClock | None = None
        self.out_stream: Any = None
        self.in_stream: Any = None

    def on_output(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now, stream_now = read_clocks(self.out_stream, time_info)
        if status.output_underflow:
            self.out_xruns += 1
        latency_s = time_info.outputBufferDacTime - time_info.currentTime
        self.out_latency_s.append(latency_s)
        assert self.out_clock is not None
        self.out_clock.add(self.out_frames,
                           now + (time_info.outputBufferDacTime - stream_now) * 1e6)
        chunk = self.signal[self.out_frames:self.out_frames + frames]
        outdata.fill(0.0)
        outdata[:chunk.size, 0] = chunk
        self.out_frames += frames

    def on_input(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now, stream_now = read_clocks(self.in_stream, time_info)
        if status.input_overflow:
            self.in_xruns += 1
        self.in_latency_s.append(time_info.currentTime - time_info.inputBufferAdcTime)
        assert self.in_clock is not None
        self.in_clock.add(self.in_frames,
                          now + (time_info.inputBufferAdcTime - stream_now) * 1e6)
        room = self.recording.size - self.in_frames
        take = max(0, min(frames, room))  # callbacks go on until the stream is stopped
        self.recording[self.in_frames:self.in_frames + take] = indata[:take, 0]
        self.in_frames += frames
        if take < frames:
            self.done.set()


def measure_room(output: int | str | None = None, input: int | str | None = None,
                 repeats: int = 5, tolerance_ms: float = 1.0,
                 max_latency_ms: float = 500.0) -> RoomCalibration:
    """Play ``repeats`` click bursts on ``output``, record ``input``, and measure the room.

    Raises CalibrationError when a device is missing, a burst is not found in the
    recording, or the repeats spread over more than ``tolerance_ms``.
    """
    import sounddevice as sd

    from gridcast.agent.audio.errors import AudioOutputError
    from gridcast.agent.audio.output import resolve_output_device

    if repeats < 2:
        raise CalibrationError(f"--repeats {repeats}: give at least 2 (their spread is the check)")
    try:
        out_info = resolve_output_device(output)
    except AudioOutputError as exc:
        raise CalibrationError(str(exc)) from exc
    in_info = _resolve_input(input)
    rate = int(out_info["default_samplerate"])
    in_rate = _input_rate(int(in_info["index"]), rate, int(in_info["default_samplerate"]))
    _, _, burst = click_bursts(rate, 1, 1.0)
    every_s = (max_latency_ms + 100.0) * 1e-3 + burst.size / rate
    signal, starts, burst = click_bursts(rate, repeats, every_s)
    record_frames = round((signal.size / rate + (max_latency_ms + 500.0) * 1e-3) * in_rate)
    streams = _Streams(signal, record_frames)
    streams.out_clock, streams.in_clock = DacClock(rate), DacClock(in_rate)
    try:
        out_stream = sd.OutputStream(device=int(out_info["index"]), samplerate=rate, channels=1,
                                     dtype="float32", latency="low", callback=streams.on_output)
        in_stream = sd.InputStream(device=int(in_info["index"]), samplerate=in_rate,
                                   channels=1, dtype="float32", latency="low",
                                   callback=streams.on_input)
    except sd.PortAudioError as exc:
        raise CalibrationError(f"cannot open {out_info['name']!r} for output at {rate} Hz and "
                               f"{in_info['name']!r} for input at {in_rate} Hz "
                               f"({str(exc).splitlines()[0]})") from exc
    streams.out_stream, streams.in_stream = out_stream, in_stream
    with out_stream, in_stream:
        seconds = record_frames / in_rate
        if not streams.done.wait(seconds + 10.0):
            raise CalibrationError(f"the input {in_info['name']!r} delivered no audio for "
                                   f"{seconds + 10.0:.0f} s: is it running?")
        stream_out_ms, stream_in_ms = out_stream.latency * 1e3, in_stream.latency * 1e3
    latencies, scores = _find_bursts(streams, starts, burst, rate, in_rate, max_latency_ms)
    skipped = streams.in_xruns + streams.out_xruns
    if skipped:
        # A skip moves frames against time, and the stream clocks' own estimates (JACK's
        # delay-locked loop) ring for seconds after one: a stall of 40 ms put a whole run
        # 2.8 ms off while its repeats still agreed (docs/audio.md).
        raise CalibrationError(
            f"the audio devices skipped {skipped} time(s) during the measurement (xruns: a "
            "busy machine), so its timing cannot be trusted: run it again with less running "
            "beside it; nothing stored")
    result = RoomCalibration(
        room_latency_ms=float(np.median(latencies)), repeats_ms=latencies,
        spread_ms=float(max(latencies) - min(latencies)), tolerance_ms=tolerance_ms,
        round_trip_ms=0.0, output_latency_ms=float(np.median(streams.out_latency_s)) * 1e3,
        input_latency_ms=float(np.median(streams.in_latency_s)) * 1e3,
        stream_output_latency_ms=stream_out_ms, stream_input_latency_ms=stream_in_ms,
        scores=scores, rate_hz=rate, output_device=str(out_info["name"]),
        input_device=str(in_info["name"]), input_xruns=streams.in_xruns,
        output_xruns=streams.out_xruns, input_rate_hz=in_rate)
    result.round_trip_ms = (result.output_latency_ms + result.room_latency_ms
                            + result.input_latency_ms)
    if result.spread_ms > tolerance_ms:
        values = ", ".join(f"{v:.2f}" for v in latencies)
        raise CalibrationError(
            f"the repeats disagree: room latency {values} ms, spread {result.spread_ms:.2f} ms "
            f"> tolerance {tolerance_ms:g} ms (noise, an echo, or a device that skips: move "
            "the microphone closer, make the room quieter, or raise --tolerance-ms); "
            "nothing stored")
    return result


def _input_rate(device: int, output_rate: int, default_rate: int) -> int:
    """The output's rate if the input takes it, else the input's own (the burst is then
    resampled to it for the correlation)."""
    import sounddevice as sd

    try:
        sd.check_input_settings(device=device, samplerate=output_rate, channels=1)
    except (ValueError, sd.PortAudioError):
        return default_rate
    return output_rate


def _find_bursts(streams: Any, starts: np.ndarray, burst: np.ndarray, rate: int,
                 in_rate: int, max_latency_ms: float) -> tuple[list[float], list[float]]:
    """Room latency (ms) and correlation score of each burst; CalibrationError if one is
    missing. ``burst`` is at the output's ``rate``; the recording at ``in_rate``."""
    recording = streams.recording[:min(streams.in_frames, streams.recording.size)]
    if recording.size == 0 or float(np.max(np.abs(recording))) < SILENCE:
        raise CalibrationError("the microphone heard nothing (silence on the input): check "
                               "that --input is the microphone, unmuted, and --output plays "
                               "into the room")
    assert streams.out_clock is not None and streams.in_clock is not None
    margin = round(0.005 * in_rate)  # PortAudio's figures may overstate a latency a little
    span = round(max_latency_ms * 1e-3 * in_rate)
    latencies, scores = [], []
    burst64 = burst.astype(np.float64)
    if in_rate != rate:  # polyphase: the resampled burst's sample 0 is still its start
        ratio = Fraction(in_rate, rate)
        burst64 = resample_poly(burst64, ratio.numerator, ratio.denominator)
    norm = float(np.linalg.norm(burst64))
    # The score counts only the samples where the burst's clicks are (and 0.5 ms around
    # them). Between its clicks a reverberant room rings with the tail of each click, which
    # says nothing about whether the clicks are there: over the burst's whole span, a
    # microphone beyond the critical distance (direct sound 6 dB under the reverberation)
    # scored under MIN_SCORE with the right latency (tests/test_calibrate.py).
    guard = max(1, round(0.0005 * in_rate))
    clicks = np.abs(burst64) > 1e-3 * float(np.max(np.abs(burst64)))
    support = np.convolve(clicks.astype(np.float64), np.ones(2 * guard + 1), mode="same") > 0
    for k, start in enumerate(starts):
        departure_us = streams.out_clock.heard_us(float(start))
        expected = int(np.floor(streams.in_clock.frame_at(departure_us))) - margin
        first, last = max(0, expected), expected + margin + span + burst64.size
        window = recording[first:min(last, recording.size)].astype(np.float64)
        if window.size < burst64.size + 2:
            raise CalibrationError(f"burst {k + 1}: the recording ends before it could arrive "
                                   "(the input stopped early)")
        corr = correlate(window, burst64, mode="valid", method="fft")
        energy = np.sqrt(np.maximum(correlate(window ** 2, support.astype(np.float64),
                                              mode="valid", method="fft"), 0.0))
        peak = int(np.argmax(corr))
        score = float(corr[peak] / (norm * max(float(energy[peak]), 1e-12)))
        if score < MIN_SCORE:
            skipped = streams.in_xruns + streams.out_xruns
            hint = (f"the audio devices skipped {skipped} time(s) (xruns: a busy machine); "
                    "run it again" if skipped else "turn the output up, move the microphone "
                    "nearer the speaker or away from the noise, or raise --max-latency-ms "
                    "if the room is slower")
            raise CalibrationError(
                f"no click found for burst {k + 1} of {len(starts)} within {max_latency_ms:g} "
                f"ms (best correlation {score:.2f} < {MIN_SCORE}): {hint}; nothing stored")
        offset = 0.0
        if 0 < peak < corr.size - 1:
            before, at, after = corr[peak - 1], corr[peak], corr[peak + 1]
            curve = before - 2 * at + after
            if curve < 0:
                offset = 0.5 * (before - after) / curve
        arrival = first + peak + offset
        latencies.append((streams.in_clock.heard_us(arrival) - departure_us) / 1e3)
        scores.append(round(score, 4))
    return latencies, scores


_KEY = re.compile(r"^\s*room_latency_ms\s*=")
_TABLE = re.compile(r"^\s*\[")


def store_room_latency(path: str, result: RoomCalibration) -> None:
    """Set ``room_latency_ms`` in the ``[agent]`` table of TOML file ``path`` (created if
    missing), keeping every other line; written to a temporary file and renamed."""
    value = round(result.room_latency_ms, 3)
    if not -MAX_ROOM_LATENCY_MS <= value <= MAX_ROOM_LATENCY_MS:
        raise CalibrationError(f"room latency {value} ms is beyond ±{MAX_ROOM_LATENCY_MS:g} ms: "
                               "not stored (check the devices)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read ({exc.strerror}); nothing stored") from exc
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{path}: not valid TOML ({exc}); fix it first, nothing "
                               "stored") from exc
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    line = (f"room_latency_ms = {value}  # gridcast calibrate, {when}: {len(result.repeats_ms)} "
            f"repeats, spread {result.spread_ms:.3f} ms")
    edited = _with_setting(text, before, line)
    after = tomllib.loads(edited)
    if _settings(after).get("room_latency_ms") != value or _others(after) != _others(before):
        raise CalibrationError(f"{path}: could not edit it safely; add `room_latency_ms = "
                               f"{value}` to its [agent] table by hand")
    _write_atomically(path, edited)


def _settings(parsed: dict[str, Any]) -> dict[str, Any]:
    """The agent's settings in a parsed config, as config.load reads them."""
    table = parsed.get("agent", parsed)
    return table if isinstance(table, dict) else {}


def _others(parsed: dict[str, Any]) -> dict[str, Any]:
    """Everything but room_latency_ms (and an [agent] table holding nothing else)."""
    out = {k: v for k, v in parsed.items() if k != "room_latency_ms"}
    if isinstance(out.get("agent"), dict):
        out["agent"] = {k: v for k, v in out["agent"].items() if k != "room_latency_ms"}
        if not out["agent"]:
            del out["agent"]
    return out


def _with_setting(text: str, parsed: dict[str, Any], line: str) -> str:
    lines = text.splitlines()
    if "agent" in parsed:
        header = next(i for i, s in enumerate(lines) if re.match(r"^\s*\[agent\]\s*(#.*)?$", s))
        end = next((i for i in range(header + 1, len(lines)) if _TABLE.match(lines[i])),
                   len(lines))
        section = range(header + 1, end)
    elif any(isinstance(v, dict) for v in parsed.values()):  # other tables, no [agent]
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + "[agent]\n" + line + "\n"
    else:  # top-level settings only (config.load reads them as the agent's)
        section = range(0, len(lines))
        header = -1
        if not text.strip():
            return "[agent]\n" + line + "\n"
    found = [i for i in section if _KEY.match(lines[i])]
    if found:
        lines[found[0]] = line
    else:
        lines.insert(header + 1, line)
    return "\n".join(lines) + "\n"


def _write_atomically(path: str, text: str) -> None:
    try:
        write_atomically(path, text)  # the file keeps its mode
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot write ({exc.strerror}); nothing stored") from exc

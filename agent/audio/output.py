"""Play a buffer so that sample i is heard at agent time ``start_us + i / rate``.

``AudioOutput`` runs one PortAudio output stream (sounddevice) whose callback writes
silence until the scheduled start and then the samples at the exact offset. Where each
written frame is heard comes from PortAudio's per-callback DAC time through
``DacClock`` (the lower envelope of callback times against frames written, which also
measures the device clock's drift), plus an optional room latency (speakers to ears).
Each callback reads the agent clock and the stream clock side by side, so the time the
Python callback waited (for the GIL, after PortAudio stamped the buffer) drops out.

Drift: with ``follow_clock=True`` (the default) the read position is steered towards the
agent timeline, at most ``MAX_SLEW_PPM`` faster or slower than real time, by linear
interpolation between samples, so a device clock 100 ppm off still plays sample i at
``start_us + i / rate``. With ``follow_clock=False`` the samples go out one per frame,
bit-exact, and ``heard_us(i)`` says when sample i is heard, for callers that would
rather move the lights than the sound.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any

import numba
import numpy as np
import sounddevice as sd
from scipy.signal import resample_poly

from gridcast.agent.audio.dac_clock import DacClock, read_clocks
from gridcast.agent.audio.errors import AudioOutputError
from gridcast.agent.audio.heap_freeze import freeze_heap
from gridcast.agent.clock import now_us

MAX_SLEW_PPM = 1000.0  # 0.1 % speed change at most: inaudible, fixes 1 ms of error per second
JUMP_MS = 2.0  # further off the timeline than this (an xrun), jump instead of slewing
DEFAULT_LEAD_MS = 100.0  # play(start_us=None) starts this far ahead of the call
_NO_DEVICES_HINT = ("none: no sound card, and no JACK server running (start one, e.g. "
                    "`jackd -n room -d dummy -r 48000 -p 256` with JACK_DEFAULT_SERVER=room, "
                    "or use gridcast's VirtualRoom)")


def output_devices() -> list[str]:
    """Every output device PortAudio sees now, as ``[index] name (host API, N out)``."""
    apis = sd.query_hostapis()
    found = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_output_channels"] > 0:
            api = apis[info["hostapi"]]["name"]
            found.append(f"[{index}] {info['name']} ({api}, {info['max_output_channels']} out)")
    return found


def resolve_output_device(device: int | str | None) -> dict[str, Any]:
    """sounddevice's info dict for an output device; AudioOutputError listing what exists."""
    try:
        info = sd.query_devices(device, "output")
    except (ValueError, sd.PortAudioError) as exc:
        listing = "; ".join(output_devices()) or _NO_DEVICES_HINT
        wanted = "default output device" if device is None else f"output device {device!r}"
        reason = str(exc).splitlines()[0]
        raise AudioOutputError(f"no {wanted} ({reason}); output devices: {listing}") from exc
    return dict(info)


@dataclass(frozen=True)
class PreparedAudio:
    """Samples made ready for one output: its rate and channels (``AudioOutput.prepare``)."""

    frames: np.ndarray  # float32, frames × output channels, at output_rate_hz
    source_rate_hz: float
    output_rate_hz: float

    @property
    def seconds(self) -> float:
        return self.frames.shape[0] / self.output_rate_hz


@dataclass
class OutputReport:
    """What the output did so far. Times are agent µs; ``None`` when it has not happened."""

    xruns: int
    callbacks: int
    frames: int
    rate_hz: float
    dac_latency_ms: float
    drift_ppm: float
    first_sound_us: float | None
    play_called_us: int | None
    callback_cpu_s: float
    callback_errors: int
    timeline_shifts: int  # times the frame-to-time line moved (skipped cycles)
    xrun_us: list[int] = field(default_factory=list)  # agent µs of each xrun (the first 100)

    @property
    def first_sound_latency_ms(self) -> float | None:
        """From the ``play()`` call to the first sample being heard."""
        if self.first_sound_us is None or self.play_called_us is None:
            return None
        return (self.first_sound_us - self.play_called_us) / 1e3


@numba.njit(cache=True, nogil=True)
def _interpolate(frames: np.ndarray, start: float, step: float, out: np.ndarray) -> None:
    """out[j] = the buffer read at position start + j·step, linearly interpolated.

    Reads outside the buffer (before sample 0, after the last) give silence, so a
    buffer plays as it is: no padded copy (copying a whole track under the GIL in
    ``play`` could hold the output callback past its deadline).
    """
    length = frames.shape[0]
    for j in range(out.shape[0]):
        position = start + step * j
        whole = np.floor(position)
        fraction = np.float32(position - whole)
        before = int(whole)
        after = before + 1
        for c in range(out.shape[1]):
            before_value = frames[before, c] if 0 <= before < length else np.float32(0.0)
            after_value = frames[after, c] if 0 <= after < length else np.float32(0.0)
            out[j, c] = before_value + (after_value - before_value) * fraction


class _Program:
    """One scheduled buffer, at the output's rate (held as given, not copied)."""

    def __init__(self, frames: np.ndarray, start_us: float, rate_hz: float) -> None:
        self.frames = frames
        self.length = frames.shape[0]
        self.start_us = start_us
        self.rate_hz = rate_hz
        self.position: float | None = None  # read position of the next frame to write
        self.frame_of_zero: float | None = None  # stream frame at which sample 0 plays
        self.finished = threading.Event()


class AudioOutput:
    """One output stream on a PortAudio device, playing buffers on the agent timeline.

    ``device`` is a sounddevice index or query string (None: the default output).
    ``rate_hz`` is the stream's rate (default: the device's). ``assume_rate_hz`` is
    the rate samples are prepared at when it differs from the stream's: a device that
    claims one rate and runs at another (the virtual room models a drifting card so).
    """

    def __init__(self, device: int | str | None = None, *, channels: int = 2,
                 rate_hz: int | None = None, room_latency_ms: float = 0.0,
                 follow_clock: bool = True, assume_rate_hz: float | None = None,
                 latency: str | float = "low") -> None:
        self._info = resolve_output_device(device)
        self.device_index = int(self._info["index"])
        self.channels = max(1, min(channels, int(self._info["max_output_channels"])))
        self.stream_rate_hz = int(rate_hz or self._info["default_samplerate"])
        self.rate_hz = float(assume_rate_hz or self.stream_rate_hz)
        self.room_latency_us = room_latency_ms * 1e3
        self.follow_clock = follow_clock
        self._latency = latency
        self._stream: sd.OutputStream | None = None
        self._dac = DacClock(self.rate_hz)
        self._program: _Program | None = None
        self._frame = 0
        self._xruns = 0
        self._xrun_us: list[int] = []
        self._callbacks = 0
        self._callback_errors = 0
        self._cpu_ns = 0
        self._dac_latency_s = 0.0
        self._first_sound_us: float | None = None
        self._play_called_us: int | None = None
        # Compile (or load from numba's cache) now, never inside the audio callback.
        _interpolate(np.zeros((3, 1), np.float32), 0.0, 1.0, np.zeros((1, 1), np.float32))

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> AudioOutput:
        """Open and start the stream (silence until something is played)."""
        if self._stream is not None:
            return self
        try:
            stream = sd.OutputStream(device=self.device_index, samplerate=self.stream_rate_hz,
                                     channels=self.channels, dtype="float32",
                                     latency=self._latency, callback=self._callback)
        except sd.PortAudioError as exc:
            listing = "; ".join(output_devices()) or _NO_DEVICES_HINT
            raise AudioOutputError(
                f"cannot open output device [{self.device_index}] {self._info['name']} at "
                f"{self.stream_rate_hz} Hz ({str(exc).splitlines()[0]}); output devices: "
                f"{listing}") from exc
        self._dac_latency_s = float(stream.latency)
        freeze_heap()  # a full collection over the whole heap would outlast a buffer
        stream.start()
        self._stream = stream
        return self

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def __enter__(self) -> AudioOutput:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- playing ---------------------------------------------------------------------------
    def prepare(self, samples: np.ndarray, rate_hz: float) -> PreparedAudio:
        """``samples`` (frames × channels, or mono) at the output's rate and channel count.

        Resampling is polyphase (scipy); a 10-minute stereo song takes about 2 s, so a
        player prepares the next track ahead and hands ``play`` the result.
        """
        return PreparedAudio(self._prepare(samples, rate_hz), float(rate_hz), self.rate_hz)

    def play(self, audio: np.ndarray | PreparedAudio, rate_hz: float | None = None,
             start_us: float | None = None) -> float:
        """Schedule ``audio`` so its sample i is heard at ``start_us + i / rate_hz`` s;
        returns ``start_us`` (default: DEFAULT_LEAD_MS after the stream is ready).

        Raw samples are prepared first (``prepare``; give ``rate_hz``). A start in the
        past joins at the current position. Replaces whatever was playing.
        """
        called = now_us()
        if not isinstance(audio, PreparedAudio):
            if rate_hz is None:
                raise AudioOutputError("play(samples) needs the samples' rate_hz")
            audio = self.prepare(audio, rate_hz)
        elif audio.output_rate_hz != self.rate_hz:
            raise AudioOutputError(f"audio prepared for {audio.output_rate_hz:.0f} Hz cannot "
                                   f"play on an output at {self.rate_hz:.0f} Hz")
        self.open()
        if start_us is None:
            start_us = now_us() + DEFAULT_LEAD_MS * 1e3
        self._first_sound_us = None
        self._play_called_us = called
        self._program = _Program(audio.frames, float(start_us), self.rate_hz)
        return float(start_us)

    def stop_sound(self) -> None:
        """Silence from the next callback on (the stream keeps running)."""
        self._program = None

    def wait_done(self, timeout_s: float | None = None) -> bool:
        """Wait until the current buffer has been written out; False on timeout."""
        program = self._program
        return True if program is None else program.finished.wait(timeout_s)

    def heard_us(self, index: float, rate_hz: float) -> float | None:
        """Agent µs at which sample ``index`` (at ``rate_hz``) of the current buffer is heard."""
        program = self._program
        if program is None:
            return None
        if self.follow_clock or program.frame_of_zero is None:
            return program.start_us + index / rate_hz * 1e6
        return self._dac.heard_us(program.frame_of_zero + index * self.rate_hz / rate_hz)

    def report(self) -> OutputReport:
        return OutputReport(
            xruns=self._xruns, callbacks=self._callbacks, frames=self._frame,
            rate_hz=self.rate_hz, dac_latency_ms=self._dac_latency_s * 1e3,
            drift_ppm=self._dac.drift_ppm, first_sound_us=self._first_sound_us,
            play_called_us=self._play_called_us, callback_cpu_s=self._cpu_ns / 1e9,
            callback_errors=self._callback_errors, timeline_shifts=self._dac.shifts,
            xrun_us=list(self._xrun_us))

    def _prepare(self, samples: np.ndarray, rate_hz: float) -> np.ndarray:
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[0] == 0:
            raise AudioOutputError(f"cannot play an array of shape {np.shape(samples)}: "
                                   "give frames or frames × channels")
        if rate_hz != self.rate_hz:
            ratio = Fraction(self.rate_hz / rate_hz).limit_denominator(1000)
            data = resample_poly(data, ratio.numerator, ratio.denominator, axis=0)
            data = data.astype(np.float32)
        channel_of = [c % data.shape[1] for c in range(self.channels)]
        return np.ascontiguousarray(data[:, channel_of])

    # -- the callback (PortAudio's thread) -------------------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any,
                  status: sd.CallbackFlags) -> None:
        cpu_start = time.thread_time_ns()
        try:
            # The stream clock now, then the agent clock (read_clocks: never early).
            # PortAudio took currentTime when its own callback began, before this Python
            # one got the GIL.
            now, stream_now = read_clocks(self._stream, time_info)
            if status.output_underflow or status.output_overflow:
                self._xruns += 1  # DacClock finds out itself whether frames were skipped
                if len(self._xrun_us) < 100:
                    self._xrun_us.append(now)
                self._dac.mark_xrun()  # a move too small to see must not tilt the slope
            latency_s = time_info.outputBufferDacTime - time_info.currentTime
            if not 0.0 <= latency_s < 1.0:  # a host API without DAC times
                latency_s = self._dac_latency_s
            self._dac_latency_s = latency_s
            since_s = stream_now - time_info.currentTime
            ahead_s = latency_s - (since_s if 0.0 <= since_s < latency_s else 0.0)
            self._dac.add(self._frame, now + ahead_s * 1e6 + self.room_latency_us)
            program = self._program
            if program is None or program.finished.is_set():
                outdata.fill(0.0)
            else:
                self._render(program, outdata, frames)
        except Exception:  # the stream must go on; the report counts what went wrong
            self._callback_errors += 1
            outdata.fill(0.0)
        self._frame += frames
        self._callbacks += 1
        self._cpu_ns += time.thread_time_ns() - cpu_start

    def _render(self, program: _Program, outdata: np.ndarray, frames: int) -> None:
        dac = self._dac
        first_us = dac.heard_us(self._frame)
        # Where the timeline wants the read position at this buffer's start and end.
        to_position = program.rate_hz / 1e6
        target_start = (first_us - program.start_us) * to_position
        target_end = target_start + frames * dac.us_per_frame * to_position
        if program.position is None:
            if target_end <= 0:
                outdata.fill(0.0)
                return
            start = target_start if self.follow_clock else float(round(target_start))
            step = (target_end - target_start) / frames if self.follow_clock else 1.0
            program.frame_of_zero = self._frame - start
            first = max(0.0, -start)
            self._first_sound_us = dac.heard_us(self._frame + first)
        else:
            start = program.position
            step = 1.0
            if self.follow_clock:
                if abs(target_start - start) > JUMP_MS * 1e-3 * program.rate_hz:
                    start = target_start  # after an xrun: catch up at once, not over seconds
                limit = MAX_SLEW_PPM * 1e-6
                step = min(max((target_end - start) / frames, 1.0 - limit), 1.0 + limit)
        program.position = start + step * frames
        _interpolate(program.frames, start, step, outdata)
        if program.position >= program.length:
            program.finished.set()

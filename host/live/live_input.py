"""An audio input whose every sample has a time on the agent's timeline (when it was heard).

PortAudio stamps each input callback's buffer with ``time.inputBufferAdcTime``: when its
first frame entered the ADC, on the stream's own clock (``time.currentTime`` is that
clock's *now*). The callback runs after the buffer was captured, never before, so

    now_us() − (stream.time − inputBufferAdcTime), the stream's clock read just before

is an upper bound of when the buffer's first frame was heard, on the agent's timeline
(PortAudio's ``currentTime``, taken when its own callback began, stands in for
``stream.time`` until the stream object exists).
Frames advance at the device's true rate, so the lower envelope of (frame, bound) is a
line: the same model as the output side's DAC clock
(:class:`gridcast.agent.audio.dac_clock.DacClock`, which this reuses as is: slope =
the device's sample period on the agent clock, skips after an overflow move the line).
``heard_us(frame)`` then gives the time of any input frame, free of the callback's
wake-up jitter.

``offset_ms`` is added to every time: the room's input latency that PortAudio does not
know (a microphone's distance, or, in the virtual room, the speakers' latency: the
input hears the player's ports before the room's speakers do).

Input overflows (audio lost because the reader fell behind) are counted and logged
(once a second at most); frames are counted as delivered, and the clock model moves
its line when the times say frames went missing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gridcast.agent.audio.dac_clock import DacClock, read_clocks
from gridcast.agent.audio.heap_freeze import freeze_heap
from gridcast.agent.clock import now_us as agent_now_us
from gridcast.host.errors import AudioError
from gridcast.host.live.thread_name import set_os_thread_name

log = logging.getLogger("gridcast.live")
_LOG_EVERY_S = 1.0


class InputClock(DacClock):
    """When input frame n was heard: the output's DAC clock model, fed input bounds."""


class LiveInput:
    """A mono input stream; ``blocks()`` yields ``(samples, first_frame)`` as they come.

    ``stream_factory`` is ``sounddevice.InputStream`` unless a test passes something
    with the same interface (a callback with ``time.currentTime`` and
    ``time.inputBufferAdcTime``, and a ``status``). ``blocksize`` 0 takes what the host
    API gives (JACK's buffer).
    """

    def __init__(self, device: str | int | None = None, rate: int | None = None,
                 blocksize: int = 0, offset_ms: float = 0.0,
                 stream_factory: Callable[..., Any] | None = None,
                 now_us: Callable[[], int] = agent_now_us) -> None:
        if stream_factory is None:
            try:
                import sounddevice
            except OSError as exc:  # the PortAudio library itself is missing
                raise AudioError("live input", f"cannot load PortAudio ({exc}); install it "
                                 "with `apt-get install libportaudio2`") from exc
            stream_factory = sounddevice.InputStream
            if rate is None:
                try:
                    rate = int(sounddevice.query_devices(device, "input")["default_samplerate"])
                except (ValueError, sounddevice.PortAudioError) as exc:
                    named = f" {device}" if device is not None else ""
                    raise AudioError("live input", f"no audio input device{named} ({exc}); "
                                     "list them with `python -m sounddevice`") from exc
        self.rate = int(rate or 44_100)
        self.offset_us = offset_ms * 1000.0
        self.clock = InputClock(self.rate)
        self.overflows = 0
        self.frames = 0  # frames delivered so far
        self._now_us = now_us
        self._blocks: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue()
        self._last_log = 0.0
        self._named = False
        self._lock = threading.Lock()
        try:
            self._stream = stream_factory(samplerate=self.rate, blocksize=blocksize, channels=1,
                                          dtype="float32", callback=self._callback,
                                          device=device)
        except Exception as exc:  # sounddevice.PortAudioError and friends
            raise AudioError("live input", f"cannot open the input ({exc})") from exc

    @property
    def stream(self) -> Any:
        return self._stream

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # The stream's clock now, then the agent's (read_clocks): the bound is never early,
        # and the time this Python callback waited for the GIL after PortAudio stamped the
        # buffer (currentTime) drops out. A stream without a clock (a stand-in, or ours
        # before the constructor returned) gives currentTime.
        stream_now = None
        if time_info is None:
            called_us = self._now_us()
        else:
            stream = getattr(self, "_stream", None)
            clocked = stream if hasattr(type(stream), "time") else None
            called_us, stream_now = read_clocks(clocked, time_info, self._now_us)
        if not self._named:  # PortAudio's (or JACK's) thread: named once, from inside
            self._named = set_os_thread_name("gc-live-audio") or True
        overflowed = bool(status) and getattr(status, "input_overflow", True)
        if overflowed:
            self.overflows += 1
            wall = time.monotonic()
            if wall - self._last_log >= _LOG_EVERY_S:
                self._last_log = wall
                log.warning("live input overflowed (%d so far): audio was lost",
                            self.overflows)
        # A stand-in stream without times (tests): its block ended when it was called.
        lag_s = frames / self.rate if stream_now is None else (
            stream_now - float(time_info.inputBufferAdcTime))
        with self._lock:
            first = self.frames
            if overflowed:
                self.clock.mark_xrun()  # frames may have moved against time by under 1 ms
            self.clock.add(first, called_us - max(lag_s, 0.0) * 1e6)
            self.frames += frames
        data = np.asarray(indata, dtype=np.float32)
        mono = data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1)
        self._blocks.put((mono, first))

    def heard_us(self, frame: float) -> float:
        """Agent µs at which input frame ``frame`` was heard."""
        with self._lock:
            return self.clock.heard_us(frame) + self.offset_us

    def start(self) -> LiveInput:
        freeze_heap()  # a full collection over the whole heap would outlast a block
        self._stream.__enter__()  # sounddevice: start; stand-ins start their thread
        return self

    def close(self) -> None:
        """Stop the stream; ``blocks()`` ends after the blocks already queued."""
        try:
            self._stream.__exit__(None, None, None)
        finally:
            self._blocks.put(None)

    def blocks(self, timeout_s: float | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """The blocks as they come, until ``close()`` (or nothing for ``timeout_s``)."""
        while True:
            try:
                item = self._blocks.get(timeout=timeout_s)
            except queue.Empty:
                return
            if item is None:
                return
            yield item

    def __enter__(self) -> LiveInput:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

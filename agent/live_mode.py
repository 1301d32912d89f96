"""Live mode: a live beat source (the room's input or an Ableton Link session) to the devices.

``LiveMode(LiveConfig(...)).run(transport, device_ids, stop)`` is what ``gridcast live``
and the daemon's ``/api/live`` run:

- ``source="input"``: an audio input (gridcast.host.live.live_input: every frame timed
  by when it was heard) read in a thread that feeds a TrackerBeatSource; its band
  envelopes go out as ``live_env`` every ``env_every_ms``.
- ``source="link"``: a LinkBeatSource (bars from ``quantum``).

Either way a LiveBeatSender sends the coming beats (``live_beats``) ahead and corrects
them; when stopped, the devices get an empty list (they let the light decay, then show
their idle effect). ``status()`` is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from gridcast.agent import playback
from gridcast.agent.clock import now_us
from gridcast.agent.live_beat_source import LiveBeatSource, SourceState
from gridcast.agent.live_sender import LiveBeatSender, send_update
from gridcast.agent.tempo_hint import hint_range
from gridcast.agent.transport import Transport
from gridcast.host.live.thread_name import name_python_threads, set_os_thread_name
from gridcast.protocol.errors import GridcastError

log = logging.getLogger("gridcast.live")
SOURCES = ("input", "link")
BARS = ("audio", "tracker")  # LiveConfig.bars


class LiveModeError(GridcastError):
    """Live mode cannot start as asked; the message says why."""


@dataclass(frozen=True)
class LiveConfig:
    """What to follow and how. ``input_device``: sounddevice name or index (None: the
    default input); ``rate``: its sample rate (None: the device's);
    ``input_offset_ms``: added to every heard time (the room's input latency PortAudio
    does not know); ``quantum``: Link's beats per bar; ``coast_s``: how long beats go on
    after the music is lost; ``correction_ms``: a sent beat is corrected when the model
    moves it by more than this; ``tempo_hint``: an input's tempo is followed within
    hint / 1.3 .. hint × 1.3 BPM (the operator knows the song's tempo octave);
    ``bars``: where an input's bar comes from until the operator presses on the one:
    ``audio`` (found in the recent audio, about 1.5 % of a core more) or ``tracker``
    (the C tracker's own guess: close to chance on music, for a machine with no CPU to
    spare)."""

    source: str = "input"
    input_device: str | int | None = None
    rate: int | None = None
    input_offset_ms: float = 0.0
    quantum: int = 4
    coast_s: float = 4.0
    horizon_s: float = 2.0
    correction_ms: float = 1.0
    env_every_ms: float = 50.0
    poll_ms: float = 20.0  # beats go out 1-2 s ahead: a correction 20 ms later costs nothing
    tempo_hint: float | None = None
    bars: str = "audio"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise LiveModeError(f"live source {self.source!r}: give one of {', '.join(SOURCES)}")
        if self.bars not in BARS:
            raise LiveModeError(f"bars {self.bars!r}: give one of {', '.join(BARS)} (where "
                                "an input's bar comes from)")
        if self.tempo_hint is not None:
            if self.source == "link":
                raise LiveModeError("a tempo hint applies to an audio input: a Link session "
                                    "gives its own tempo")
            check_tempo_hint(self.tempo_hint)


def check_tempo_hint(tempo_hint: float | None) -> None:
    """LiveModeError unless None or within the range the tracker can follow around it."""
    try:
        hint_range(tempo_hint)
    except ValueError as exc:
        raise LiveModeError(f"{exc} (the song's tempo, as a DJ reads it)") from None


class LiveMode:
    def __init__(self, config: LiveConfig, source: LiveBeatSource | None = None,
                 stream_factory: Any = None) -> None:
        """``source`` and ``stream_factory`` are for tests and benches (a prepared source;
        a stand-in for sounddevice.InputStream)."""
        self.config = config
        self._stream_factory = stream_factory
        self.source: Any = source
        self.input: Any = None
        self.sender: LiveBeatSender | None = None
        self.started_at = time.time()
        self.envelopes = 0
        self.error: str | None = None
        self.overflows = 0  # input overflows, kept after the input closed
        self._reader: threading.Thread | None = None

    def open(self) -> LiveMode:
        """Open the input or join Link (errors as LiveModeError / AudioError / LinkError)."""
        c = self.config
        if self.source is None and c.source == "link":
            from gridcast.agent.link_follow import LinkBeatSource

            self.source = LinkBeatSource(beats_per_bar=c.quantum, coast_s=c.coast_s).start()
        elif c.source == "input":
            from gridcast.agent.tracker_beat_source import TrackerBeatSource
            from gridcast.host.live.live_input import LiveInput

            self.input = LiveInput(device=c.input_device, rate=c.rate, blocksize=512,
                                   offset_ms=c.input_offset_ms,
                                   stream_factory=self._stream_factory)
            if self.source is None:
                self.source = TrackerBeatSource(self.input.rate, coast_s=c.coast_s,
                                                tempo_hint=c.tempo_hint,
                                                find_bars=c.bars == "audio", bar_worker=True)
            self.input.start()
            self._reader = threading.Thread(target=self._read, name="gc-live-reader",
                                            daemon=True)
            self._reader.start()
        self.sender = LiveBeatSender(self.source, horizon_s=c.horizon_s,
                                     correction_us=int(c.correction_ms * 1000),
                                     poll_s=c.poll_ms / 1000)
        return self

    def _read(self) -> None:
        set_os_thread_name("gc-live-reader")
        try:
            for block, first in self.input.blocks():
                self.source.feed(block, first, self.input.heard_us)
        except Exception as exc:  # the reader must say why it stopped, not die silently
            self.error = f"live input stopped: {exc}"
            log.error("%s", self.error)

    async def run(self, transport: Transport, device_ids: list[str] | None,
                  stop: asyncio.Event) -> None:
        """Send beats (and envelopes) until ``stop`` is set; then cancel what devices hold."""
        if self.sender is None:
            self.open()
        assert self.sender is not None
        name_python_threads()  # per-thread CPU in top -H and bench/live.py --cost
        next_env = 0.0
        try:
            while not stop.is_set():
                update = self.sender.step(now_us())
                if update is not None:
                    await send_update(transport, device_ids, update)
                if self.input is not None and time.monotonic() >= next_env:
                    next_env = time.monotonic() + self.config.env_every_ms / 1000
                    await self._send_envelope(transport, device_ids)
                # A plain sleep: wait_for(stop.wait()) made a task and a timer every
                # poll; stopping up to poll_ms later costs nothing.
                await asyncio.sleep(self.config.poll_ms / 1000)
        finally:
            with contextlib.suppress(Exception):
                await send_update(transport, device_ids, self.sender.cancel())
            self.close()

    def set_tempo_hint(self, tempo_hint: float | None) -> None:
        """Follow the input's tempo within hint / 1.3 .. hint × 1.3 BPM from now on (None:
        the whole range); the tracker restarts, and the beats coast until it locks."""
        check_tempo_hint(tempo_hint)
        if not hasattr(self.source, "set_tempo_hint"):
            raise LiveModeError("a tempo hint applies to an audio input: a Link session "
                                "gives its own tempo")
        self.source.set_tempo_hint(tempo_hint)
        log.info("tempo hint %s", f"{tempo_hint:g} BPM" if tempo_hint else "cleared")

    def set_downbeat(self, at_us: int, beats_per_bar: int | None = None) -> int:
        """The beat nearest ``at_us`` (agent µs) is the one, and the bar is counted from
        it (a press between the beats moves them half a beat: TrackerBeatSource); returns
        that beat's time. LiveModeError when there is no beat to set yet."""
        if not hasattr(self.source, "set_downbeat"):
            raise LiveModeError("the downbeat comes from the Link session's quantum: set "
                                "the bar in the Link app")
        try:
            one = self.source.set_downbeat(at_us, beats_per_bar)
        except ValueError as exc:
            raise LiveModeError(f"downbeat: {exc}") from exc
        moved = " on the beats moved half a beat (the tracker was on the off-beat)" if getattr(
            self.source, "half_beat", False) else ""
        log.info("downbeat set by the operator (%d µs from now)%s", one - now_us(), moved)
        return int(one)

    async def _send_envelope(self, transport: Transport, device_ids: list[str] | None) -> None:
        block = self.source.envelope()
        if block is None:
            return
        await playback.send_live_envelope(transport, device_ids, block.start_us, block.rate_mhz,
                                          block.bass, block.mid, block.high)
        self.envelopes += 1

    def close(self) -> None:
        if self.input is not None:
            self.overflows = self.input.overflows
            self.input.close()
            if self._reader is not None:
                self._reader.join(timeout=2)
            self.input = None
        if self.source is not None and hasattr(self.source, "close"):
            self.source.close()

    def status(self) -> dict:
        """State, tempo, confidence, input overflows, messages: for the status line / API."""
        source = self.source
        state = source.state if source is not None else SourceState.IDLE
        out: dict[str, Any] = {
            "source": self.config.source,
            "state": str(state),
            "tempo_bpm": round(float(source.tempo_bpm), 1) if source is not None else 0.0,
            "beats_per_bar": source.beats_per_bar if source is not None else 0,
            "confidence": round(float(getattr(source, "confidence", 1.0 if state
                                              is SourceState.LOCKED else 0.0)), 2),
            "messages": self.sender.sent_messages if self.sender else 0,
            "corrections": self.sender.corrections if self.sender else 0,
            "envelopes": self.envelopes,
            "tempo_hint": getattr(source, "tempo_hint", None),
            "half_beat": bool(getattr(source, "half_beat", False)),
            # press, audio or tracker (TrackerBeatSource.bar_from); Link's quantum
            "bar_from": getattr(source, "bar_from", self.config.source),
            "started_at": self.started_at,
            "config": asdict(self.config),
        }
        if self.config.source == "input":
            live_input = self.input
            out["overflows"] = live_input.overflows if live_input is not None else self.overflows
            out["beats_heard"] = getattr(source, "beats", 0)
        if self.error:
            out["error"] = self.error
        return out


def status_line(status: dict) -> str:
    """One line: ``locked  124.0 BPM  4/bar (audio)  conf 0.82  msgs 31  overflows 0``."""
    hint = f" (hint {status['tempo_hint']:g})" if status.get("tempo_hint") else ""
    if status.get("half_beat"):
        hint += " +½ beat"
    bar = (f"  {status['beats_per_bar']}/bar ({status['bar_from']})"
           if status.get("beats_per_bar") and status.get("bar_from") else "")
    line = (f"{status['state']:<8} {status['tempo_bpm']:6.1f} BPM{hint}{bar}  conf "
            f"{status['confidence']:.2f}  msgs {status['messages']}")
    if "overflows" in status:
        line += f"  overflows {status['overflows']}"
    return line

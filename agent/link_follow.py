"""Follow an Ableton Link session: its coming beats on the agent's timeline.

gridcast joins the session as one more Link peer (PyPI ``linkpython-extern``, import
name ``link``) and answers ``upcoming(now_us, horizon_us)`` from Link's session state:
the beats Link will play in that window, each mapped from Link's clock to the agent's
timeline (gridcast.agent.link_clock), with its place in the bar read from Link's
phase against the quantum (the bar length every peer shares), an accent on the one.
The session state is captured afresh on every call, so a tempo change by any peer
shows in the very next answer.

When the last other peer leaves (or disables Link), Link carries on alone at the
last tempo: the source reports ``coasting`` and keeps giving those beats for
``coast_s`` with a confidence falling from 1 to 0, then reports ``idle`` and gives
none until a peer is back. Before the first peer is found it is ``idle`` too: a
session of gridcast alone has no music to follow. With ``follow_transport`` it is
also ``idle`` while the session's transport is stopped (start/stop sync: a DJ
pressing stop in Live), and its beats start where the transport starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gridcast.agent.clock import now_us as agent_now_us
from gridcast.agent.link_clock import LinkClockMap
from gridcast.agent.live_beat_source import LiveBeat, SourceState
from gridcast.protocol.errors import GridcastError

MAX_BEATS_PER_BAR = 16  # bundles allow the same
# One answer never lists more beats than this, whatever the horizon (999 bpm is
# Link's top tempo: 16 beats is about 1 s there, 8 s at 120 bpm).
MAX_BEATS_PER_ANSWER = 64


class LinkError(GridcastError):
    """Link cannot be used as asked; the message says why and what to do."""


def _default_link_factory(bpm: float) -> Any:
    try:
        import link
    except ImportError as exc:
        raise LinkError("Ableton Link needs the linkpython-extern package: "
                        "pip install linkpython-extern") from exc
    return link.Link(bpm)


class LinkBeatSource:
    """A live beat source that follows the Link session on this machine's networks.

    ``beats_per_bar``: Link's quantum (1..16). ``coast_s``: how long beats go on
    after the session vanished. ``start_bpm``: the tempo gridcast offers if it is
    the first peer (the session's tempo wins as soon as it joins one).
    ``downbeat_strength`` / ``beat_strength``: accents, 0..1. ``follow_transport``:
    share Link's start/stop state, and give beats only while the session's transport
    plays (from the instant it starts). ``link_factory`` and ``now_us`` are for tests
    (a fake Link; a fake clock).
    """

    def __init__(self, beats_per_bar: int = 4, coast_s: float = 8.0, start_bpm: float = 120.0,
                 downbeat_strength: float = 1.0, beat_strength: float = 0.5,
                 follow_transport: bool = False,
                 link_factory: Callable[[float], Any] = _default_link_factory,
                 now_us: Callable[[], int] = agent_now_us) -> None:
        if not (isinstance(beats_per_bar, int) and 1 <= beats_per_bar <= MAX_BEATS_PER_BAR):
            raise LinkError(f"beats per bar (Link quantum) must be a whole number 1.."
                            f"{MAX_BEATS_PER_BAR}, got {beats_per_bar!r}")
        if not coast_s >= 0:
            raise LinkError(f"coast time must be >= 0 s, got {coast_s!r}")
        self._beats_per_bar = beats_per_bar
        self.coast_us = int(coast_s * 1e6)
        self.start_bpm = start_bpm
        self.downbeat_strength = downbeat_strength
        self.beat_strength = beat_strength
        self.follow_transport = follow_transport
        self._link_factory = link_factory
        self._now_us = now_us
        self._link: Any = None
        self._clock: LinkClockMap | None = None
        self._state = SourceState.IDLE
        self._tempo_bpm = 0.0
        self._peers = 0
        self._ever_locked = False
        self._lost_at_us: int | None = None
        self._session: Any = None  # Link's session state, captured by the last poll
        self.started_at_us: int | None = None
        self.locked_at_us: int | None = None  # when the first peer was seen

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> LinkBeatSource:
        """Join the network: enable Link (it discovers peers by UDP multicast)."""
        if self._link is None:
            self._link = self._link_factory(self.start_bpm)
            link_clock = self._link.clock()
            self._clock = LinkClockMap(link_clock.micros, self._now_us)
        if self.follow_transport:
            self._link.startStopSyncEnabled = True
        self._link.enabled = True
        self.started_at_us = self._now_us()
        return self

    def close(self) -> None:
        """Leave the session (disable Link); the source is idle from now on."""
        if self._link is not None:
            self._link.enabled = False
        self._state = SourceState.IDLE

    def __enter__(self) -> LinkBeatSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what live mode reads ----------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def tempo_bpm(self) -> float:
        return self._tempo_bpm

    @property
    def beats_per_bar(self) -> int:
        return self._beats_per_bar

    @property
    def peers(self) -> int:
        """Other Link peers in the session, as of the last poll."""
        return self._peers

    @property
    def clock_map(self) -> LinkClockMap | None:
        return self._clock

    def poll(self, now_us: int | None = None) -> SourceState:
        """Refresh the peer count, the tempo and the clock map; return the state."""
        now = self._now_us() if now_us is None else now_us
        if self._link is None or self._clock is None or not self._link.enabled:
            self._state = SourceState.IDLE
            return self._state
        self._clock.update()
        self._peers = int(self._link.numPeers())
        if self._peers > 0:
            if not self._ever_locked:
                self.locked_at_us = now
            self._ever_locked = True
            self._lost_at_us = None
            self._state = SourceState.LOCKED
        elif self._ever_locked:
            if self._lost_at_us is None:
                self._lost_at_us = now
            within = now - self._lost_at_us < self.coast_us
            self._state = SourceState.COASTING if within else SourceState.IDLE
        else:
            self._state = SourceState.IDLE
        if self._ever_locked:
            self._session = self._link.captureAppSessionState()
            self._tempo_bpm = float(self._session.tempo())
            if self.follow_transport and not self._session.isPlaying():
                self._state = SourceState.IDLE  # the music is stopped
        return self._state

    def upcoming(self, now_us: int, horizon_us: int) -> list[LiveBeat]:
        """The session's beats in ``[now_us, now_us + horizon_us)`` (agent µs)."""
        state = self.poll(now_us)
        if state is SourceState.IDLE:
            return []
        assert self._clock is not None  # poll() is not idle without one
        end_us = now_us + horizon_us
        if state is SourceState.COASTING:
            assert self._lost_at_us is not None
            end_us = min(end_us, self._lost_at_us + self.coast_us)
        session = self._session
        quantum = self._beats_per_bar
        start_link = self._clock.to_link_us(now_us)
        if self.follow_transport:  # a start is scheduled on a bar: no beat before it
            start_link = max(start_link, float(session.timeForIsPlaying()))
        end_link = self._clock.to_link_us(end_us)
        beat = math.ceil(session.beatAtTime(math.floor(start_link), quantum))
        beats: list[LiveBeat] = []
        while len(beats) < MAX_BEATS_PER_ANSWER:
            at_link = session.timeAtBeat(beat, quantum)
            beat += 1
            if at_link < start_link:
                continue
            if at_link >= end_link:
                break
            at_us = round(self._clock.to_agent_us(at_link))
            # Beat magnitudes are this peer's own; the phase against the quantum is
            # what all peers share, so the place in the bar comes from it.
            in_bar = round(session.phaseAtTime(round(at_link), quantum)) % quantum + 1
            beats.append(LiveBeat(at_us, in_bar, self._strength(in_bar),
                                  self._confidence(at_us)))
        return beats

    def _strength(self, beat_in_bar: int) -> float:
        return self.downbeat_strength if beat_in_bar == 1 else self.beat_strength

    def _confidence(self, at_us: int) -> float:
        if self._lost_at_us is None or self.coast_us <= 0:
            return 1.0
        return max(0.0, 1.0 - (at_us - self._lost_at_us) / self.coast_us)

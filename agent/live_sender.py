"""Send the devices a live beat source's coming beats, ahead, and correct them.

Any LiveBeatSource (an Ableton Link session, the tracker's live mode) is asked for
its beats in the next ``horizon_s`` every ``poll_s``. The devices get them as
``live_beats`` messages (docs/protocol.md, section 10): a message replaces every
prediction a device holds that has not fired, so the sender sends again when

- a beat it sent moved by more than ``correction_us``, or changed its place in the
  bar or strength, or a beat appeared or vanished inside what was sent (a tempo
  change, the session lost: corrections);
- what was sent runs out within ``refill_s`` and the source has more (the devices
  hold at least that much of the future, so a late or lost message costs nothing);
- the source went idle: an empty list cancels what the devices hold.

Beat numbers: the protocol numbers beats so that a device never fires one twice. The
first coming beat keeps the number of the beat sent nearest to it (within half a
beat), or takes the next unused number; the others follow it one by one.

While the source coasts, each beat's strength is scaled by its confidence, so the
lights fade out over the coast instead of stopping dead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from gridcast.agent import playback
from gridcast.agent.clock import now_us as agent_now_us
from gridcast.agent.live_beat_source import LiveBeatSource
from gridcast.agent.transport import Transport
from gridcast.protocol import messages


@dataclass(frozen=True)
class LiveBeatsUpdate:
    """One ``live_beats`` message: what it says and its encoded bytes."""

    session: int
    generation: int
    first_index: int
    times_us: list[int]
    beat_in_bar: list[int]
    strength: list[int]  # 0..255
    reason: str  # first, correction, refill, cancel

    def payload(self) -> bytes:
        return playback.live_beats_message(self.session, self.generation, self.first_index,
                                           self.times_us, self.beat_in_bar, self.strength)


class LiveBeatSender:
    """Turns a beat source's answers into the ``live_beats`` messages worth sending.

    ``step(now_us)`` is sans-I/O (returns the update to send, or None); ``run()``
    sends them over a transport. ``session`` identifies this live run to the
    devices (default: the agent time it started, so a restart is a new session).
    """

    def __init__(self, source: LiveBeatSource, horizon_s: float = 2.0, refill_s: float = 1.0,
                 correction_us: int = 100, poll_s: float = 0.01, session: int | None = None,
                 now_us: Callable[[], int] = agent_now_us) -> None:
        self.source = source
        self.horizon_us = int(horizon_s * 1e6)
        self.refill_us = int(refill_s * 1e6)
        self.correction_us = correction_us
        self.poll_s = poll_s
        self._now_us = now_us
        self.session = session if session is not None else now_us()
        self.generation = 0
        self._next_index = 0
        # What the devices hold: beat number -> (at_us, beat_in_bar, strength).
        self._sent: dict[int, tuple[int, int, int]] = {}
        self.sent_messages = 0
        self.corrections = 0

    def step(self, now_us: int) -> LiveBeatsUpdate | None:
        beats = self.source.upcoming(now_us, self.horizon_us)[:messages.MAX_LIVE_BEATS]
        if not beats:
            if not any(at >= now_us for at, _, _ in self._sent.values()):
                return None
            self._sent = {}
            return self._update(0, [], "cancel")
        rows = [(b.at_us, b.beat_in_bar, min(255, max(0, round(255 * b.strength * b.confidence))))
                for b in beats]
        first_index = self._number(rows[0][0], rows)
        new = {first_index + k: row for k, row in enumerate(rows)}
        reason = self._why_send(now_us, new)
        if reason is None:
            return None
        self._sent = new
        self._next_index = max(self._next_index, first_index + len(rows))
        return self._update(first_index, rows, reason)

    def _number(self, first_at_us: int, rows: list[tuple[int, int, int]]) -> int:
        if len(rows) > 1:
            half_beat_us = (rows[1][0] - rows[0][0]) / 2
        else:
            half_beat_us = 30e6 / max(self.source.tempo_bpm, 1.0)
        nearest = min(self._sent.items(), key=lambda item: abs(item[1][0] - first_at_us),
                      default=None)
        if nearest is not None and abs(nearest[1][0] - first_at_us) < half_beat_us:
            return nearest[0]
        return self._next_index

    def _why_send(self, now_us: int, new: dict[int, tuple[int, int, int]]) -> str | None:
        if not self._sent:
            return "first"
        covered_until = max(at for at, _, _ in self._sent.values())
        for index, (at, in_bar, strength) in new.items():
            held = self._sent.get(index)
            if held is None:
                if at <= covered_until:
                    return "correction"  # a beat appeared among those sent
            elif (abs(held[0] - at) > self.correction_us or held[1] != in_bar
                  or held[2] != strength):
                return "correction"
        last_new = max(at for at, _, _ in new.values())
        for index, (at, _, _) in self._sent.items():
            if index not in new and now_us <= at <= last_new:
                return "correction"  # a beat the devices hold vanished
        if covered_until < now_us + self.refill_us and last_new > covered_until:
            return "refill"
        return None

    def _update(self, first_index: int, rows: list[tuple[int, int, int]],
                reason: str) -> LiveBeatsUpdate:
        self.generation += 1
        self.sent_messages += 1
        if reason in ("correction", "cancel"):
            self.corrections += 1
        return LiveBeatsUpdate(self.session, self.generation, first_index,
                               [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                               reason)

    def cancel(self) -> LiveBeatsUpdate:
        """The message that withdraws every pending beat (live mode ends)."""
        self._sent = {}
        return self._update(0, [], "cancel")

    async def run(self, transport: Transport, device_ids: list[str] | None,
                  stop: asyncio.Event) -> None:
        """Send updates until ``stop`` is set, then cancel what the devices hold."""
        try:
            while not stop.is_set():
                update = self.step(self._now_us())
                if update is not None:
                    await send_update(transport, device_ids, update)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
        finally:
            await send_update(transport, device_ids, self.cancel())


async def send_update(transport: Transport, device_ids: list[str] | None,
                      update: LiveBeatsUpdate) -> None:
    """One update to ``device_ids`` (None: every device on the transport)."""
    await playback.send_live_beats(transport, device_ids, update.session, update.generation,
                                   update.first_index, update.times_us, update.beat_in_bar,
                                   update.strength)

"""The beat scheduler: fires beats and downbeats on the agent's timeline.

Beats come from one of two sources, through one firing path (same wait, same
LED-frame stamp, same drift telemetry):
- a bundle: beat-map time m plays at the agent time the Timeline gives for it
  (start_us + m at normal speed; anchors with a playback rate otherwise);
- live beats (live.py): agent-timeline instants the agent predicted. When they
  run out the player coasts no further than the last one it was given: the
  light decays, then the idle effect shows until new predictions come.
The sync model turns agent time into device time, and every beat is written
light_offset_us (plus the board's LED latency) early, so the light is seen on it.
The wait is re-planned while it runs (the clock estimate keeps improving, and a
command may move the beat): asyncio sleeps until SPIN_US before the beat, then a busy
sleep and spin finish the last stretch precisely (on a board a hardware timer
would; asyncio alone only gives millisecond granularity). In between beats the LEDs
follow the energy envelopes at about FRAME_MS. A bundle with a structure part also
gives each beat its section (a SectionCursor: one comparison per beat), which the
LED effects use for palettes and the drop's hit.

A hand-over (an ``activate`` with an instant ahead, docs/protocol.md 6) keeps the old
map lit from the file already open until that instant, while the new bundle is
already the stored active one; the ``play`` of the new bundle waits and takes over at
the hand-over (or at its own start, when that comes first).
"""

import asyncio
import gc

from gridcast.firmware.live import LiveBeats, LiveEnvelope
from gridcast.firmware.timeline import Timeline
from gridcast.protocol import bundle_reader, bundle_structure
from gridcast.protocol.messages import MAX_RATE_PPM, MIN_RATE_PPM, NORMAL_RATE_PPM
from gridcast.protocol.reasons import NOT_FOUND, OK, RATE_OUT_OF_RANGE

SPIN_US = 3000
FINAL_SPIN_US = 200
FRAME_MS = 20
LATE_SKIP_US = 50000  # beats this late (after a seek or a stall) are skipped, not fired
BUNDLE = 1  # what the player plays (Player.mode)
LIVE = 2


class Player:
    def __init__(self, board, clock, sync, leds, telemetry, store):
        self.board = board
        self.clock = clock
        self.sync = sync
        self.leds = leds
        self.telemetry = telemetry
        self.store = store
        self.playing = False
        self.mode = 0  # BUNDLE or LIVE while playing
        self.timeline = Timeline()
        self.live = LiveBeats()
        self.live_env = LiveEnvelope()
        self.light_offset_us = 0  # the light is seen this long after the write (docs/protocol.md 9)
        self.stop_at_us = 0
        self.track_id = ""
        self.beats_fired = 0
        self.free_after_gc = 0  # free heap right after the last collection (live memory)
        self._f = None
        self._info = None
        self._cursor = None
        self._sections = None  # SectionCursor when the bundle has sections
        self._pending = None  # (index, map time) of the bundle beat to fire next
        self.handover_at_us = 0  # agent time the lit map's lights end (0: no hand-over)
        self._takeover = None  # (start_us, rate_ppm, position_us): the play waiting for it
        self._to_self = False  # the hand-over is to the lit bundle itself (a replay)
        self._generation = 0  # bumped by every command: an ongoing wait re-plans or gives up
        self._due_local = None  # device time of the beat being waited for (None: none)
        self._wake = asyncio.Event()

    def now_agent(self):
        return self.sync.to_agent(self.clock.now_us())

    def _open(self):
        self.close()
        info = self.store.active_info
        if info is None:
            return False
        self._f = self.store.open_active()
        self._info = info
        return True

    def close(self):
        if self._f is not None:
            self._f.close()
        self._f = None
        self._info = None
        self._cursor = None
        self._sections = None
        self.handover_at_us = 0
        self._takeover = None
        self._to_self = False

    @property
    def start_us(self):
        """Agent time of map time 0 under the anchor in force (exact at normal speed)."""
        return self.timeline.agent_time(0)

    def _changed(self):
        self._generation += 1
        self._wake.set()

    def play(self, track_id, start_us, rate_ppm=NORMAL_RATE_PPM, position_us=0):
        """Play the active bundle: map time ``position_us`` at agent time ``start_us``."""
        if not MIN_RATE_PPM <= rate_ppm <= MAX_RATE_PPM:
            return RATE_OUT_OF_RANGE
        info = self.store.active_info
        if info is None or (track_id and info.track_id != track_id):
            return NOT_FOUND
        if self.handover_at_us:
            # The new bundle waits for the lit map: it takes over at the hand-over, or at
            # its own start when that comes first (the agent cut to it early).
            self._takeover = (start_us, rate_ppm, position_us)
            if start_us < self.handover_at_us:
                self.handover_at_us = start_us
            self.stop_at_us = 0
            self._changed()
            return OK
        lit = self._info
        if self.playing and self.mode == BUNDLE and lit is not None and \
                lit.track_id == info.track_id and lit.bundle_version == info.bundle_version \
                and start_us > self.now_agent():
            # The lit bundle again from an instant ahead (the same track next in a set
            # list, a restart): its beats go on up to that instant, where this play takes
            # over (a hand-over to itself, docs/protocol.md 6).
            self.handover_at_us = start_us
            self._takeover = (start_us, rate_ppm, position_us)
            self._to_self = True
            self.stop_at_us = 0
            self._changed()
            return OK
        if not self._open():
            return NOT_FOUND
        self._begin(info, start_us, position_us, rate_ppm)
        return OK

    def _begin(self, info, start_us, position_us, rate_ppm):
        """Play the open file from its first beat on a new timeline."""
        self.track_id = info.track_id
        self.timeline.reset(start_us, position_us, rate_ppm)
        self.stop_at_us = 0
        self._cursor = bundle_reader.BeatCursor(self._f, self._info)
        self._sections = (bundle_structure.SectionCursor(self._f, info)
                          if info.section_count else None)
        self._pending = None
        self.live.cancel()
        self.mode = BUNDLE
        self.playing = True
        self._changed()

    def stop(self, at_us=0):
        """Lights off at agent time ``at_us`` (0: now). A stop now also ends a hand-over
        and drops the play waiting for it: after a stop nothing plays until a play."""
        if at_us and at_us > self.now_agent():
            self.stop_at_us = at_us
            return OK
        if self.handover_at_us:
            self.close()  # the old map's file; the stored active bundle is the new one
        self.playing = False
        self.mode = 0
        self.live.cancel()
        self._changed()
        self.leds.off()
        return OK

    def seek(self, position_us, at_us, rate_ppm=NORMAL_RATE_PPM):
        """At agent time ``at_us`` the map is at ``position_us``, running at ``rate_ppm``."""
        if not MIN_RATE_PPM <= rate_ppm <= MAX_RATE_PPM:
            return RATE_OUT_OF_RANGE
        if self._info is None:
            return NOT_FOUND
        if self.handover_at_us:  # re-time the lit map; the hand-over and its play stay
            self._begin(self._info, at_us, position_us, rate_ppm)
            return OK
        return self.play(self.track_id, at_us, rate_ppm, position_us)

    def set_rate(self, rate_ppm, at_us=0):
        """From agent time ``at_us`` (0: now) the bundle runs at ``rate_ppm``, without a jump."""
        if not MIN_RATE_PPM <= rate_ppm <= MAX_RATE_PPM:
            return RATE_OUT_OF_RANGE
        if not self.playing or self.mode != BUNDLE:
            return NOT_FOUND
        now = self.now_agent()
        code = self.timeline.change_rate(rate_ppm, at_us or now, now)
        if code == OK:
            self._changed()  # the beat being waited for is re-planned on the new grid
        return code

    def live_beats(self, msg):
        """Predicted beats (a live_beats message): they replace what is pending and take
        over from a bundle. ProtocolError for a list that contradicts itself."""
        code = self.live.replace(msg)
        if code != OK:
            return code
        if not self.playing and not self.live.pending:
            return OK  # nothing to play, nothing to cancel
        if self.mode == BUNDLE:
            self.close()
        self.mode = LIVE
        self.playing = True
        self.stop_at_us = 0
        self._changed()
        return OK

    def bundle_changed(self, at_us=0):
        """A new bundle became active (an activate or a rollback). The lit bundle's lights
        end now (live beats go on), or at agent time ``at_us`` when that lies ahead: a
        hand-over. An activation that makes the lit bundle active again ends a hand-over
        and the lit map plays on."""
        info, lit = self.store.active_info, self._info
        if self.handover_at_us and info is not None and lit is not None and \
                info.track_id == lit.track_id and info.bundle_version == lit.bundle_version:
            if not self._to_self:  # a hand-over to the lit bundle itself stays
                self.handover_at_us = 0
                self._takeover = None
            return
        if at_us and self.playing and self.mode == BUNDLE and at_us > self.now_agent():
            if not self.handover_at_us or at_us < self.handover_at_us:
                self.handover_at_us = at_us
            self._takeover = None  # a play for an earlier activation is void
            self._to_self = False
            self._changed()
            return
        if self.playing and self.mode == BUNDLE:
            self.stop()
        self.close()

    def _hand_over(self):
        """The lit map reached the hand-over: the waiting play takes over (its beats all lie
        at or after the hand-over), else the lights end. Returns _next_target()."""
        takeover, stop_at = self._takeover, self.stop_at_us
        self.close()
        info = self.store.active_info
        if takeover is None or info is None or not self._open():
            self.playing = False
            self.mode = 0
            return None
        self._begin(info, takeover[0], takeover[2], takeover[1])
        self.stop_at_us = stop_at  # a stop scheduled after the hand-over still holds
        return self._next_target()

    async def run(self):
        while True:
            if not self.playing:
                self._wake.clear()
                await self._wake.wait()
                continue
            nxt = self._next_target()
            if nxt is None:
                if self.playing and self.mode == LIVE:
                    await self._coast()
                continue
            index, target = nxt
            gen = self._generation
            if self.stop_at_us and target >= self.stop_at_us:
                self.stop()
                continue
            if self.now_agent() - target > LATE_SKIP_US:
                self._consume()
                continue
            bar, strength, env = self._beat_look(target)
            self.leds.prepare_beat(index, bar, strength, env, self._section_look())
            fired_ok = await self._wait_until(target, gen)
            due = self._due_local
            self._due_local = None
            if not fired_ok:
                continue  # a command came: the next beat is planned again on the new state
            # The fire time is the board's own stamp of when the frame showed: a stall
            # between the spin and the write (an interrupt, a preempted process) makes
            # the beat late, and the drift report must say so. The light is seen
            # light_offset_us after that, which is the instant the target is meant for.
            fired = self.clock.at(self.leds.show_beat(None if due is None
                                                      else self.clock.raw(due)))
            self._consume()
            self.telemetry.record_fire(fired + self.light_offset_us, target)
            self.beats_fired += 1
            # Collect garbage now, right after a beat, so that an allocation-triggered
            # collection never lands in the spin before the next one.
            gc.collect()
            self.free_after_gc = gc.mem_free()

    def _next_target(self):
        """(index, agent time) of the next beat, or None when the source has none."""
        if self.mode == LIVE:
            live = self.live
            number = live.peek_number()
            return None if number < 0 else (number, live.times[live.next])
        if self._pending is None:
            cursor = self._cursor
            t = None if cursor is None else cursor.next_time_us()
            if t is None or cursor is None:
                if self.handover_at_us:
                    return self._hand_over()
                self.playing = False  # the end of the track
                self.mode = 0
                return None
            self._pending = (cursor.index - 1, t)
        self.timeline.prune(self.now_agent())
        index, t = self._pending
        target = self.timeline.agent_time(t)
        if self.handover_at_us and target >= self.handover_at_us:
            return self._hand_over()
        return index, target

    def _beat_look(self, target):
        """(beat_in_bar, strength, envelope) of the beat _next_target gave."""
        if self.mode == LIVE:
            live = self.live
            return live.bars[live.next], live.strengths[live.next], self.live_env.at(target)
        pending = self._pending
        cursor = self._cursor
        if pending is None or cursor is None:
            return 0, 0, (0, 0, 0)
        bar, strength = cursor.beat_info(pending[0])
        return bar, strength, self._envelope(pending[1])

    def _section_look(self):
        """(number, role code, energy) of the section of the beat _next_target gave, or
        None (live beats, a bundle without sections, a beat between sections)."""
        sections, pending = self._sections, self._pending
        if self.mode != BUNDLE or sections is None or pending is None:
            return None
        return sections.at(pending[1])

    def _consume(self):
        if self.mode == LIVE:
            self.live.done()
        else:
            self._pending = None

    def _env_now(self):
        now = self.now_agent()
        if self.mode == LIVE:
            return self.live_env.at(now)
        return self._envelope(self.timeline.position(now))

    async def _coast(self):
        """Live beats ran out: no beat is invented. The light decays (following the live
        envelope while one comes), then the idle effect rises from dark, until new
        predictions (or a command) arrive."""
        gen = self._generation
        idle_since = None
        while gen == self._generation and self.playing:
            if self.stop_at_us and self.now_agent() >= self.stop_at_us:
                self.stop()
                return
            env = self._env_now()
            if idle_since is None and (self.leds.level > 0 or env != (0, 0, 0)):
                self.leds.frame(env)
            else:
                now = self.clock.now_us()
                if idle_since is None:
                    idle_since = now
                self.leds.idle((now - idle_since) // 1000)
            await asyncio.sleep_ms(FRAME_MS)

    async def quiet(self, work_us):
        """Return when ``work_us`` of other work cannot delay a beat: at once if no beat
        is due sooner, else once the coming beat has fired. Other tasks call this before
        long work (a telemetry batch), which would otherwise hold the event loop while
        this task should wake for its final spin."""
        while True:
            due = self._due_local
            if due is None:
                return
            left = due - self.clock.now_us()
            if left > work_us + SPIN_US:
                return
            await asyncio.sleep_ms(max(1, left // 1000 + 1))

    def _envelope(self, map_us):
        info = self._info
        if info is None:
            return 0, 0, 0
        frame = map_us * info.env_rate_mhz // 1000000000
        return bundle_reader.read_envelope(self._f, info, frame)

    async def _wait_until(self, target_agent, gen):
        latency = self.board.led_latency_us()
        while True:
            if gen != self._generation:
                return False
            now = self.clock.now_us()
            due = self.sync.to_local(target_agent, now) - latency - self.light_offset_us
            self._due_local = due
            left = due - now
            if left > SPIN_US + 1000 * FRAME_MS + 5000:
                self.leds.frame(self._env_now())
                await asyncio.sleep_ms(FRAME_MS)
            elif left > SPIN_US:
                await asyncio.sleep_ms((left - SPIN_US) // 1000)
            else:
                # Sleep through most of the last stretch (a timer, not the CPU), then spin
                # the final FINAL_SPIN_US; a spin holds a core that other work may need.
                rest = due - self.clock.now_us()
                if rest > FINAL_SPIN_US:
                    self.board.sleep_us(rest - FINAL_SPIN_US)
                while self.clock.now_us() < due:
                    pass
                return gen == self._generation

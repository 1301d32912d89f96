"""The beat scheduler: fires beats and downbeats on the agent's timeline.

Beat-map time m plays at agent time start_us + m; the sync model turns that
into device time. The wait is re-planned while it runs (the clock estimate
keeps improving): asyncio sleeps until SPIN_US before the beat, then a busy
sleep and spin finish the last stretch precisely (on a board a hardware timer
would; asyncio alone only gives millisecond granularity). In between beats the LEDs
follow the energy envelopes at about FRAME_MS.
"""

import asyncio
import gc

from gridcast.protocol import bundle_reader
from gridcast.protocol.reasons import NOT_FOUND, OK

SPIN_US = 3000
FINAL_SPIN_US = 200
FRAME_MS = 20
LATE_SKIP_US = 50000  # beats this late (after a seek or a stall) are skipped, not fired


class Player:
    def __init__(self, board, clock, sync, leds, telemetry, store):
        self.board = board
        self.clock = clock
        self.sync = sync
        self.leds = leds
        self.telemetry = telemetry
        self.store = store
        self.playing = False
        self.start_us = 0
        self.stop_at_us = 0
        self.track_id = ""
        self.beats_fired = 0
        self.free_after_gc = 0  # free heap right after the last collection (live memory)
        self._f = None
        self._info = None
        self._cursor = None
        self._generation = 0  # bumped by play/stop/seek: an ongoing wait gives up
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

    def play(self, track_id, start_us):
        info = self.store.active_info
        if info is None or (track_id and info.track_id != track_id):
            return NOT_FOUND
        if not self._open():
            return NOT_FOUND
        self.track_id = info.track_id
        self.start_us = start_us
        self.stop_at_us = 0
        self._cursor = bundle_reader.BeatCursor(self._f, self._info)
        self.playing = True
        self._generation += 1
        self._wake.set()
        return OK

    def stop(self, at_us=0):
        if at_us and at_us > self.now_agent():
            self.stop_at_us = at_us
            return OK
        self.playing = False
        self._generation += 1
        self.leds.off()
        return OK

    def seek(self, position_us, at_us):
        if self._info is None:
            return NOT_FOUND
        return self.play(self.track_id, at_us - position_us)

    def bundle_changed(self):
        """A new bundle became active: stop playing the old file."""
        if self.playing:
            self.stop()
        self.close()

    async def run(self):
        while True:
            if not self.playing or self._cursor is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            gen = self._generation
            index = self._cursor.index
            t = self._cursor.next_time_us()
            if t is None:
                self.playing = False
                continue
            target = self.start_us + t
            if self.stop_at_us and target >= self.stop_at_us:
                self.stop()
                continue
            if self.now_agent() - target > LATE_SKIP_US:
                continue
            bar, strength = self._cursor.beat_info(index)
            env = self._envelope(t)
            self.leds.prepare_beat(index, bar, strength, env)
            fired_ok = await self._wait_until(target, gen)
            self._due_local = None
            if not fired_ok:
                continue
            # The fire time is the board's own stamp of when the frame showed: a stall
            # between the spin and the write (an interrupt, a preempted process) makes
            # the beat late, and the drift report must say so.
            fired = self.clock.at(self.leds.show_beat())
            self.telemetry.record_fire(fired, target)
            self.beats_fired += 1
            # Collect garbage now, right after a beat, so that an allocation-triggered
            # collection never lands in the spin before the next one.
            gc.collect()
            self.free_after_gc = gc.mem_free()

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
            due = self.sync.to_local(target_agent, now) - latency
            self._due_local = due
            left = due - now
            if left > SPIN_US + 1000 * FRAME_MS + 5000:
                self.leds.frame(self._envelope(self.now_agent() - self.start_us))
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

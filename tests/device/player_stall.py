"""Run with MicroPython: beats whose LED write stalls are recorded at the instant they showed.

usage: micropython player_stall.py BUNDLE STALL_US
Prints the drift of each of the first beats. A stall between the scheduler's
spin and the LED write (an interrupt, a preempted process) makes the beat late;
the drift the device reports must include it.

usage: micropython player_stall.py BUNDLE quiet
Waits until a beat is due within 50 ms, then awaits Player.quiet(100 ms of work) and
prints the beats fired before and after: long work must wait for the beat.
"""

import asyncio
import os
import sys
import time

from gridcast.firmware.clock import LocalClock
from gridcast.firmware.clocksync import SyncEstimator
from gridcast.firmware.leds import Renderer
from gridcast.firmware.player import Player
from gridcast.firmware.telemetry import Telemetry
from gridcast.protocol import bundle_reader

BEATS = 3


class StallingBoard:
    def __init__(self, stall_us):
        self.stall_us = stall_us
        self.shown = []  # device ticks at which beat frames showed

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_us(self, us):
        time.sleep_us(us)

    def led_latency_us(self):
        return 0

    def led_write(self, buf, beat_index=None, due=None, bar_pos=None):
        t0 = time.ticks_us()
        if beat_index is not None:
            while time.ticks_diff(time.ticks_us(), t0) < self.stall_us:
                pass
        shown = time.ticks_us()
        if beat_index is not None:
            self.shown.append(shown)
        return shown


class OneBundle:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.active_info = bundle_reader.inspect(f, os.stat(path)[6])

    def open_active(self):
        return open(self.path, "rb")


async def main(path, stall_us):
    board = StallingBoard(stall_us)
    clock = LocalClock(board)
    sync = SyncEstimator()  # no exchanges: agent time is device time
    telemetry = Telemetry(boot=1)
    player = Player(board, clock, sync, Renderer(board, 4), telemetry, OneBundle(path))
    first = player.store.active_info
    player.play(first.track_id, clock.now_us() + 50000)
    task = asyncio.create_task(player.run())
    while player.beats_fired < BEATS:
        await asyncio.sleep_ms(10)
    task.cancel()
    for local, target in telemetry.fires:
        print(sync.to_agent(local) - target)


async def quiet(path):
    board = StallingBoard(0)
    clock = LocalClock(board)
    player = Player(board, clock, SyncEstimator(), Renderer(board, 4), Telemetry(boot=1),
                    OneBundle(path))
    player.play(player.store.active_info.track_id, clock.now_us() + 50000)
    task = asyncio.create_task(player.run())
    while player.beats_fired < 1 or player._due_local is None or \
            player._due_local - clock.now_us() > 50000:
        await asyncio.sleep_ms(1)
    before = player.beats_fired
    await player.quiet(100000)
    print(before, player.beats_fired)
    task.cancel()


if sys.argv[2] == "quiet":
    asyncio.run(quiet(sys.argv[1]))
else:
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

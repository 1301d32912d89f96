"""Run with MicroPython: the real Player and Renderer on a bundle with sections.

usage: micropython structure_scenarios.py SCENARIO BUNDLE [ARG]

    play N          play from 50 ms ahead until N beats fired; every beat frame's
                    (beat index, first LED as R G B)
    cost N          microseconds per scheduled beat (next beat, its look-up, its
                    section, its frame rendered ahead), the least of five rounds of
                    N beats

Prints one JSON object; tests/test_structure.py checks it.
"""

import asyncio
import json
import os
import sys
import time

from gridcast.firmware.clock import LocalClock
from gridcast.firmware.clocksync import SyncEstimator
from gridcast.firmware.leds import Renderer
from gridcast.firmware.player import Player
from gridcast.firmware.telemetry import Telemetry
from gridcast.protocol import bundle_reader


class FrameBoard:
    """LED writes of beats recorded as (beat index, R, G, B of the first LED)."""

    def __init__(self):
        self.beats = []

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_us(self, us):
        time.sleep_us(us)

    def led_latency_us(self):
        return 0

    def led_write(self, buf, beat_index=None, due=None, bar_pos=None):
        if beat_index is not None:
            self.beats.append((beat_index, buf[1], buf[0], buf[2]))  # GRB -> R G B
        return time.ticks_us()

    def log(self, text):
        print(text)

    def temperature_c(self):
        return None

    def cpu_percent(self):
        return 0


class OneBundle:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.active_info = bundle_reader.inspect(f, os.stat(path)[6])

    def open_active(self):
        return open(self.path, "rb")


def make_player(path):
    board = FrameBoard()
    return Player(board, LocalClock(board), SyncEstimator(), Renderer(board, 8),
                  Telemetry(boot=1), OneBundle(path))


async def play(path, n):
    player = make_player(path)
    player.play("", player.now_agent() + 50000)
    task = asyncio.create_task(player.run())
    t0 = time.ticks_ms()
    while player.beats_fired < n and time.ticks_diff(time.ticks_ms(), t0) < 20000:
        await asyncio.sleep_ms(10)
    task.cancel()
    return {"beats": player.board.beats}


def _round(path, n):
    player = make_player(path)
    player.play("", player.now_agent() + 10 ** 9)
    leds = player.leds
    t0 = time.ticks_us()
    for _ in range(n):
        index, target = player._next_target()
        bar, strength, env = player._beat_look(target)
        leds.prepare_beat(index, bar, strength, env, player._section_look())
        player._consume()
    return time.ticks_diff(time.ticks_us(), t0) / n


def cost(path, n):
    return {"per_beat_us": min(_round(path, n) for _ in range(5))}


def main():
    scenario, path = sys.argv[1], sys.argv[2]
    arg = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if scenario == "play":
        out = asyncio.run(play(path, arg))
    elif scenario == "cost":
        out = cost(path, arg)
    else:
        raise SystemExit("unknown scenario " + scenario)
    print(json.dumps(out))


main()

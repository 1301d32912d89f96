"""Run with MicroPython: the real Player with rate, live beats and a light offset.

usage: micropython player_scenarios.py SCENARIO BUNDLE [ARG]

Prints one JSON object; tests/test_player_rate.py checks it against what it
computes itself on CPython. The clock is the interpreter's own (no sync exchanges:
agent time is device time), and LED writes are stamped with it by the board,
so a frame's stamp is the instant the scheduler got the LEDs written.

    rate PPM        play at PPM from 50 ms ahead; the first beats' LED stamps
    setrate PPM     play at 100 %, then `rate` PPM from an instant ahead
    refuse          play at 94 %, then a rate, seek and play out of range
    live            two generations of live beats, then no more: coast, then idle
    offset_set US   Device: light_offset US through the dispatcher (this process ends)
    offset_play     Device after a restart: the offset it kept, and beats played with it
    cost N          microseconds per scheduled beat, bundle and live paths, N beats each
    handover MODE   Device playing bundles/active.gcb gets BUNDLE (another track) by
                    transfer, then activate(at_us=H), H 70 ms after one of its beats, and
                    play(BUNDLE's track, H); MODE 1: then a stop at once; 2: activate
                    with an instant in the past instead; 3: then a rollback; 4: no new
                    bundle, the playing one again from H (a hand-over to itself); 5: as
                    4, then an activation of that same bundle reaches the player
"""

import asyncio
import json
import os
import sys
import time

from gridcast.firmware.clock import LocalClock
from gridcast.firmware.clocksync import SyncEstimator
from gridcast.firmware.leds import Renderer
from gridcast.firmware.player import LIVE, Player
from gridcast.firmware.telemetry import Telemetry
from gridcast.protocol import bundle_reader, messages

KEY = bytes(range(32))


class RecordingBoard:
    """LED writes recorded as (tick, brightest byte, beat index or None)."""

    def __init__(self):
        self.frames = []

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_us(self, us):
        time.sleep_us(us)

    def led_latency_us(self):
        return 0

    def led_write(self, buf, beat_index=None, due=None, bar_pos=None):
        shown = time.ticks_us()
        self.frames.append((shown, max(buf), beat_index))
        return shown

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


def make_player(path, board=None):
    board = board or RecordingBoard()
    clock = LocalClock(board)
    player = Player(board, clock, SyncEstimator(), Renderer(board, 8), Telemetry(boot=1),
                    OneBundle(path) if path else None)
    return player


def stamps(player):
    """[(beat index, agent time its frame showed, agent time it was meant for)] for every
    beat frame written (the target as the player recorded it for telemetry)."""
    clock = player.clock
    targets = [target for _, target in player.telemetry.fires]
    out = []
    for tick, _, index in player.board.frames:
        if index is not None:
            out.append((index, player.sync.to_agent(clock.at(tick)), targets[len(out)]))
    return out


async def until_fired(player, n, timeout_ms=10000):
    t0 = time.ticks_ms()
    while player.beats_fired < n:
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            raise RuntimeError("only %d of %d beats fired" % (player.beats_fired, n))
        await asyncio.sleep_ms(5)


async def rate(path, rate_ppm):
    player = make_player(path)
    start = player.now_agent() + 50000
    code = player.play("", start, rate_ppm)
    task = asyncio.create_task(player.run())
    await until_fired(player, 6)
    task.cancel()
    return {"code": code, "start_us": start, "rate_ppm": rate_ppm, "fired": stamps(player)}


async def setrate(path, rate_ppm):
    player = make_player(path)
    start = player.now_agent() + 50000
    player.play("", start)
    task = asyncio.create_task(player.run())
    await until_fired(player, 2)
    at = player.now_agent() + 100000  # a change ahead: beats before it keep the old grid
    code = player.set_rate(rate_ppm, at)
    await until_fired(player, 7)
    task.cancel()
    return {"code": code, "start_us": start, "at_us": at, "rate_ppm": rate_ppm,
            "fired": stamps(player)}


async def refuse(path):
    player = make_player(path)
    start = player.now_agent() + 50000
    player.play("", start, 940000)
    task = asyncio.create_task(player.run())
    await until_fired(player, 2)
    codes = [player.set_rate(1200000, player.now_agent()),
             player.seek(0, player.now_agent(), 500000),
             player.play("", player.now_agent(), 919999)]
    await until_fired(player, 6)
    task.cancel()
    return {"codes": codes, "start_us": start, "rate_ppm": 940000, "fired": stamps(player)}


def live_msg(generation, first, times, session=7):
    n = len(times)
    return messages.decode(messages.encode(
        "live_beats", session=session, generation=generation, first_index=first,
        times_us=times, beat_in_bar=[(first + k) % 4 + 1 for k in range(n)],
        strength=[200] * n))


async def live(_path):
    player = make_player(None)
    now = player.now_agent()
    gen1 = [now + 200000 + k * 300000 for k in range(5)]  # beats 100..104
    codes = [player.live_beats(live_msg(1, 100, gen1))]
    task = asyncio.create_task(player.run())
    await until_fired(player, 1)
    # The model moved: beats 101..104 come 40 ms later. The list still holds beat 100,
    # which has fired and must not fire again.
    gen2 = [gen1[0] + 40000] + [t + 40000 for t in gen1[1:]]
    codes.append(player.live_beats(live_msg(2, 100, gen2)))
    codes.append(player.live_beats(live_msg(1, 100, gen1)))  # stale: changes nothing
    await until_fired(player, 5)
    last_fired_tick = player.board.frames[-1][0]
    await asyncio.sleep_ms(2500)  # predictions ran out: coast, decay, idle
    task.cancel()
    after = [(time.ticks_diff(t, last_fired_tick), level, index)
             for t, level, index in player.board.frames
             if time.ticks_diff(t, last_fired_tick) > 0]
    return {"codes": codes, "gen1": gen1, "gen2": gen2, "fired": stamps(player),
            "after": after, "mode_live": player.mode == LIVE}


def make_device(board):
    from gridcast.firmware import app

    cfg = {"key": KEY, "led_count": 8, "device_id": "offset-test"}
    return app.Device(board, cfg)


def offset_set(offset_us):
    device = make_device(RecordingBoard())
    msg = messages.decode(messages.encode("light_offset", offset_us=offset_us))
    reply = device._dispatch(msg, 0)
    hello = messages.decode(device.hello_message())
    return {"reply": reply is None, "hello_offset": hello.light_offset_us}


async def offset_play(path):
    board = RecordingBoard()
    device = make_device(board)
    device.store.recover()
    player = device.player
    start = player.now_agent() + 100000
    reply = device._dispatch(messages.decode(messages.encode("play", start_us=start)), 0)
    task = asyncio.create_task(player.run())
    await until_fired(player, 4)
    task.cancel()
    drift = [player.sync.to_agent(local) - target for local, target in device.telemetry.fires]
    return {"reply": reply is None, "offset_us": player.light_offset_us,
            "hello_offset": messages.decode(device.hello_message()).light_offset_us,
            "status_offset": messages.decode(device.status_message("online")).light_offset_us,
            "start_us": start, "fired": stamps(player), "drift_us": drift}


def _dispatch(device, kind, **fields):
    """The device's answer to one message (decoded), or None when it gives none."""
    reply = device._dispatch(messages.decode(messages.encode(kind, **fields)), 0)
    return None if reply is None else messages.decode(reply)


def _transfer(device, path, transfer_id):
    """Offer and send the bundle at ``path`` in 1 KB chunks: the last chunk_ack's offset."""
    from gridcast.protocol.transfer import file_sha256

    with open(path, "rb") as f:
        data = f.read()
    with open(path, "rb") as f:
        sha = file_sha256(f)
    with open(path, "rb") as f:
        info = bundle_reader.inspect(f, len(data))
    _dispatch(device, "bundle_offer", transfer_id=transfer_id, size=len(data), sha256=sha,
              chunk_size=1024, track_id=info.track_id, bundle_version=info.bundle_version)
    ack = None
    for offset in range(0, len(data), 1024):
        ack = _dispatch(device, "chunk", transfer_id=transfer_id, offset=offset,
                        data=data[offset:offset + 1024])
    return info.track_id, ack.next_offset if ack is not None else -1


async def handover(path, mode):
    device = make_device(RecordingBoard())
    device.store.recover()
    player = device.player
    start = player.now_agent() + 100000
    old_beats = []
    cursor = bundle_reader.BeatCursor(player.store.open_active(), player.store.active_info)
    t = cursor.next_time_us()
    while t is not None:
        old_beats.append(start + t)
        t = cursor.next_time_us()
    _dispatch(device, "play", start_us=start)
    task = asyncio.create_task(player.run())
    await until_fired(player, 2)  # just after a beat: the transfer blocks the loop briefly
    if mode >= 4:
        track, acked = player.store.active_info.track_id, True
    else:
        track, acked = _transfer(device, path, 5)
    soon = player.now_agent() + 400000
    lit = [b for b in old_beats if b <= soon]
    handover_us = old_beats[len(lit)] + 70000  # 70 ms after the old map's next beat
    at = 1 if mode == 2 else handover_us  # 1: long gone (0 would mean "now")
    activated = again = None
    if mode < 4:
        activated = _dispatch(device, "activate", transfer_id=5, at_us=at)
        again = _dispatch(device, "activate", transfer_id=5, at_us=at)  # a resend: no change
    active_track = messages.decode(device.hello_message()).active_track
    replies = [_dispatch(device, "play", track_id=track, start_us=handover_us)]
    if mode == 5:
        player.bundle_changed(handover_us)  # what an activation of the lit bundle does
    if mode == 1:
        replies.append(_dispatch(device, "stop"))
    elif mode == 3:
        replies.append(_dispatch(device, "rollback"))
    while player.now_agent() < handover_us + 700000:
        await asyncio.sleep_ms(20)
    task.cancel()
    return {"start_us": start, "handover_us": handover_us, "acked": acked,
            "activated": activated and activated.kind, "again": again and again.kind,
            "active_track": active_track,
            "replies": [None if r is None else r.kind for r in replies],
            "fired": stamps(player)}


def per_beat_us(player, n, refill=None):
    """Microseconds per beat of the scheduling work between two waits: next beat, its
    look-up, rendering its frame ahead, consuming it (refill: a live_beats message per
    beat, decoded and applied, as a model correcting every beat sends)."""
    t0 = time.ticks_us()
    for k in range(n):
        if refill is not None:
            refill(k)
        index, target = player._next_target()
        bar, strength, env = player._beat_look(target)
        player.leds.prepare_beat(index, bar, strength, env)
        player._consume()
    return time.ticks_diff(time.ticks_us(), t0) / n


def _bundle_cost(path, n):
    player = make_player(path)
    player.play("", player.now_agent() + 10 ** 9, 1060000)
    return per_beat_us(player, n)


def _live_cost(n, base):
    """Per beat with the 32 predictions already held (the same 32 again and again)."""
    player = make_player(None)
    player.live_beats(messages.decode(messages.encode(
        "live_beats", session=2, generation=1, first_index=0,
        times_us=[base + j * 500000 for j in range(32)], beat_in_bar=[1] * 32,
        strength=[128] * 32)))
    t = 0.0
    chunks = n // 32
    for _ in range(chunks):
        t += per_beat_us(player, 32) * 32
        player.live.last_fired = -1
        player.live.next = 0
    return t / (chunks * 32)


def _live_message_cost(n, base, session):
    """Per beat when every beat brings a new 8-beat generation (a model correcting)."""
    player = make_player(None)
    raw = []  # messages as bytes, made before timing (the agent makes them)
    for k in range(n):
        times = [base + (k + j) * 500000 for j in range(8)]
        raw.append(messages.encode("live_beats", session=session, generation=k + 1,
                                   first_index=k, times_us=times, beat_in_bar=[1] * 8,
                                   strength=[128] * 8))

    def from_message(k):
        player.live_beats(messages.decode(raw[k]))

    return per_beat_us(player, n, from_message)


def cost(path, n):
    """The least of five rounds per path: a round the OS preempted says nothing of the
    code."""
    base = 10 ** 10  # agent us, far ahead of these players' clocks (they start near 0)
    rounds = range(5)
    return {"bundle_us": min(_bundle_cost(path, n) for _ in rounds),
            "live_us": min(_live_cost(n, base) for _ in rounds),
            "live_with_message_us": min(_live_message_cost(n, base, r + 10) for r in rounds)}


def main():
    scenario = sys.argv[1]
    path = sys.argv[2] if len(sys.argv) > 2 else ""
    arg = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if scenario == "rate":
        out = asyncio.run(rate(path, arg))
    elif scenario == "setrate":
        out = asyncio.run(setrate(path, arg))
    elif scenario == "refuse":
        out = asyncio.run(refuse(path))
    elif scenario == "live":
        out = asyncio.run(live(path))
    elif scenario == "offset_set":
        out = offset_set(arg)
    elif scenario == "offset_play":
        out = asyncio.run(offset_play(path))
    elif scenario == "handover":
        out = asyncio.run(handover(path, arg))
    elif scenario == "cost":
        out = cost(path, arg)
    else:
        raise SystemExit("unknown scenario " + scenario)
    print(json.dumps(out))


main()

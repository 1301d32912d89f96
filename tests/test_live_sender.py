"""The live sender: which live_beats messages a beat source's answers turn into."""

from __future__ import annotations

import asyncio

import pytest

from gridcast.agent.live_beat_source import LiveBeat, SourceState
from gridcast.agent.live_sender import LiveBeatSender
from gridcast.protocol import messages, topics


class GridSource:
    """Beats every ``period_us`` from ``origin_us`` (4 to the bar), until ``end_us``."""

    def __init__(self, period_us: int = 500_000, origin_us: int = 0) -> None:
        self.period_us, self.origin_us = period_us, origin_us
        self.state = SourceState.LOCKED
        self.end_us: int | None = None
        self.confidence = 1.0
        self.beats_per_bar = 4

    @property
    def tempo_bpm(self) -> float:
        return 60e6 / self.period_us

    def upcoming(self, now_us: int, horizon_us: int) -> list[LiveBeat]:
        if self.state is SourceState.IDLE:
            return []
        end = now_us + horizon_us if self.end_us is None else min(now_us + horizon_us,
                                                                 self.end_us)
        k = -(-(now_us - self.origin_us) // self.period_us)
        beats = []
        while self.origin_us + k * self.period_us < end:
            in_bar = k % 4 + 1
            beats.append(LiveBeat(self.origin_us + k * self.period_us, in_bar,
                                  1.0 if in_bar == 1 else 0.5, self.confidence))
            k += 1
        return beats


def decoded(update) -> messages.Message:
    msg = messages.decode(update.payload())
    messages.check_live_beats(msg)
    return msg


def test_first_message_numbers_the_coming_beats_from_zero() -> None:
    sender = LiveBeatSender(GridSource(), horizon_s=2.0, session=7)
    update = sender.step(100_000)
    assert update is not None and update.reason == "first"
    msg = decoded(update)
    assert (msg.session, msg.generation, msg.first_index) == (7, 1, 0)
    assert msg.times_us == [500_000, 1_000_000, 1_500_000, 2_000_000]
    assert msg.beat_in_bar == [2, 3, 4, 1]
    assert msg.strength == [128, 128, 128, 255]


def test_nothing_new_sends_nothing_until_the_beats_run_low() -> None:
    sender = LiveBeatSender(GridSource(), horizon_s=2.0, refill_s=1.0)
    sender.step(100_000)
    assert sender.step(200_000) is None
    assert sender.step(1_000_000) is None  # beats held up to 2.0 s: a second ahead
    refill = sender.step(1_100_000)
    assert refill is not None and refill.reason == "refill"
    # Beat 1.5 s was number 2 in the first message and keeps it.
    assert (refill.first_index, refill.times_us[0]) == (2, 1_500_000)
    assert refill.generation == 2


def test_a_tempo_change_is_corrected_at_once_keeping_the_beat_numbers() -> None:
    source = GridSource()
    sender = LiveBeatSender(source, horizon_s=2.0)
    sender.step(100_000)  # beats 0.5, 1.0, 1.5, 2.0 as numbers 0..3
    source.origin_us, source.period_us = 500_000, 460_000  # faster from beat 0.5 s
    update = sender.step(600_000)
    assert update is not None and update.reason == "correction"
    assert update.first_index == 1 and update.times_us[0] == 960_000
    assert update.times_us[1] - update.times_us[0] == 460_000


def test_a_move_under_the_threshold_is_not_worth_a_message() -> None:
    source = GridSource()
    sender = LiveBeatSender(source, correction_us=100)
    sender.step(100_000)
    source.origin_us = 60  # the clock map refitted: 60 µs
    assert sender.step(200_000) is None
    source.origin_us = 160
    assert sender.step(300_000) is not None


def test_coasting_fades_the_strength_and_stops_at_the_end_of_the_coast() -> None:
    source = GridSource()
    sender = LiveBeatSender(source, horizon_s=2.0)
    sender.step(100_000)
    source.state, source.confidence, source.end_us = SourceState.COASTING, 0.5, 1_600_000
    update = sender.step(200_000)
    assert update is not None and update.reason == "correction"
    assert update.strength == [64, 64, 64]  # 0.5 strength x 0.5 confidence
    # No more beats to give: no refill, however low the devices run.
    assert all(sender.step(now) is None for now in range(300_000, 1_600_000, 10_000))


def test_going_idle_cancels_what_the_devices_hold_once() -> None:
    source = GridSource()
    sender = LiveBeatSender(source)
    sender.step(100_000)
    source.state = SourceState.IDLE
    cancel = sender.step(200_000)
    assert cancel is not None and cancel.reason == "cancel" and decoded(cancel).times_us == []
    assert sender.step(210_000) is None


def test_a_message_carries_at_most_the_protocols_limit() -> None:
    sender = LiveBeatSender(GridSource(period_us=50_000), horizon_s=4.0)
    update = sender.step(0)
    assert update is not None and len(decoded(update).times_us) == messages.MAX_LIVE_BEATS


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str | None, bytes]] = []  # (device or None: all, payload)

    async def broadcast(self, payload: bytes) -> None:
        self.sent.append((None, payload))

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        assert leaf == topics.CMD
        self.sent.append((device_id, payload))


@pytest.mark.parametrize("device_ids", [None, ["stage-1", "stage-2"]])
def test_run_sends_then_cancels_when_stopped(device_ids: list[str] | None) -> None:
    sender = LiveBeatSender(GridSource(), poll_s=0.001, now_us=lambda: 100_000)
    transport = RecordingTransport()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(transport, device_ids, stop))  # type: ignore[arg-type]
        while not transport.sent:
            await asyncio.sleep(0.001)
        stop.set()
        await task

    asyncio.run(scenario())
    targets = [None] if device_ids is None else device_ids
    assert [device for device, _ in transport.sent] == targets * 2  # the beats, the cancel
    sent = [messages.decode(payload) for _, payload in transport.sent]
    assert len(sent[0].times_us) == 4
    assert sent[-1].times_us == [] and sent[-1].generation > sent[0].generation


@pytest.mark.parametrize("step_us", [10_000, 37_000])
def test_beat_numbers_never_go_back_on_a_steady_grid(step_us: int) -> None:
    sender = LiveBeatSender(GridSource())
    number_of: dict[int, int] = {}
    for now in range(0, 10_000_000, step_us):
        update = sender.step(now)
        if update is None:
            continue
        for k, at in enumerate(update.times_us):
            assert number_of.setdefault(at, update.first_index + k) == update.first_index + k
    assert sorted(number_of.values()) == list(range(len(number_of)))

"""Live follow: the grid is moved to the live beats, and left alone when it already fits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gridcast.agent.live_follow import LiveFollower, run_live
from gridcast.agent.transport import Transport
from gridcast.protocol import messages
from tests.conftest import ClickInput


def simulate(offset_ms: float, tempo_ratio: float, jitter_ms: float = 4.0, beats: int = 120,
             follow_rate: bool = False, seed: int = 3):
    """The music plays the grid ``tempo_ratio`` slower from ``offset_ms`` late; returns the
    follower, the seeks (position, at, rate) and rate changes (rate, at) it sent, and
    |where the devices show beat j - when it was heard| in ms."""
    grid = np.arange(beats) * 0.5
    start = 10_000_000
    seeks: list[tuple[int, int, int]] = []
    rates: list[tuple[int, int]] = []
    follower = LiveFollower(grid, start, lambda p, at, r: seeks.append((p, at, r)),
                            set_rate=(lambda r, at: rates.append((r, at))) if follow_rate
                            else None)
    rng = np.random.default_rng(seed)
    true_start = start + offset_ms * 1000
    errors = []
    for j in range(beats):
        live = true_start + j * 0.5e6 * tempo_ratio + rng.normal(0, jitter_ms * 1000)
        follower.on_beat(int(live))
        # where the devices show beat j now (the follower's model is theirs after a command)
        errors.append((follower.shown_us(grid[j] * 1e6) - live) / 1000)
    follower.rates = rates  # type: ignore[attr-defined]
    return follower, seeks, np.abs(errors)


def test_an_offset_grid_is_moved_onto_the_live_beats():
    follower, seeks, errors = simulate(offset_ms=80, tempo_ratio=1.0)
    assert len(seeks) == 1
    assert abs(follower.stats.corrections_ms[0] - 80) < 5
    assert np.percentile(errors[10:], 95) < 12  # within the jitter of the live beats


def test_a_band_that_slows_down_is_followed_by_small_moves():
    _, seeks, errors = simulate(offset_ms=0, tempo_ratio=1.01, beats=200)
    assert 3 <= len(seeks) <= 40
    assert np.max(errors[20:]) < 40
    # positions sent are consistent: position = at - start at that moment
    assert all(at - pos > 0 and rate == 1_000_000 for pos, at, rate in seeks)


@pytest.mark.parametrize("tempo_ratio", [1.01, 0.95, 1 / 0.94])
@pytest.mark.parametrize("seed", [3, 4])
def test_a_tempo_off_the_map_is_followed_by_the_rate_not_by_repeated_seeks(tempo_ratio, seed):
    """A DJ's pitch fader (or a band) plays the map at 1 / tempo_ratio: the devices get that
    rate (once or twice, as the estimate firms up) and then stay on the music. The seeking
    follower sends a seek every few beats (about 40 in 100 s at 1 %) and at 5 % it cannot
    keep up at all (errors of about 100 ms)."""
    follower, seeks, errors = simulate(offset_ms=0, tempo_ratio=tempo_ratio, beats=200,
                                       follow_rate=True, seed=seed)
    want = 1e6 / tempo_ratio
    assert 1 <= follower.stats.rate_changes <= 3
    assert abs(follower.stats.rate_ppm - want) < 500, (follower.stats.rate_ppm, want)
    assert len(seeks) + len(follower.rates) <= 10
    assert np.percentile(errors[30:], 95) < 15 and np.max(errors[30:]) < 20
    # once the rate has been sent, every seek carries it
    first_rate_at = min([at for _, at in follower.rates] +
                        [at for _, at, rate in seeks if rate != 1_000_000])
    assert all(abs(rate - want) < 2000 for _, at, rate in seeks if at >= first_rate_at)


def test_a_steady_tempo_gets_no_rate_change():
    for seed in range(5):
        follower, seeks, _ = simulate(offset_ms=3, tempo_ratio=1.0, beats=200,
                                      follow_rate=True, seed=seed)
        assert follower.stats.rate_changes == 0 and seeks == [], seed


def test_a_grid_that_fits_is_left_alone():
    _, seeks, errors = simulate(offset_ms=3, tempo_ratio=1.0)
    assert seeks == []
    assert np.percentile(errors, 95) < 12


def test_off_beat_or_unsure_beats_are_ignored():
    grid = np.arange(40) * 0.5
    seeks: list = []
    follower = LiveFollower(grid, 0, lambda p, at, r: seeks.append(p))
    for j in range(40):
        follower.on_beat(int(j * 0.5e6 + 250_000))  # exactly between two grid beats
        follower.on_beat(int(j * 0.5e6 + 60_000), confidence=0.1)
    assert seeks == [] and follower.stats.matched == 0


class RecordingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, bytes]] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        self.sent.append((device_id, payload))

    async def broadcast(self, payload: bytes) -> None:
        self.sent.append(("*", payload))


class RealTimeClicks(ClickInput):
    pace = True


def test_play_live_moves_the_devices_onto_the_room(tmp_path):
    """The room plays clicks at 120 BPM; the devices' grid was started 120 ms after the
    music: seeks bring it onto the clicks."""
    from gridcast.agent.clock import now_us

    grid = np.arange(0, 60, 0.5) + 0.25  # the song's beats, first at 0.25 s
    transport = RecordingTransport()

    async def scenario():
        async with transport:
            loop = asyncio.get_running_loop()
            RealTimeClicks.music_at_us = now_us() + 1_000_000
            start = RealTimeClicks.music_at_us + 120_000  # the grid: 120 ms after the music
            return start, await asyncio.to_thread(
                run_live, transport, ["d1"], grid, start, loop, rate=22050,
                stream_factory=RealTimeClicks, max_seconds=13.0)

    _, stats = asyncio.run(scenario())
    seeks = [messages.decode(p) for _, p in transport.sent]
    assert seeks and all(m.kind == "seek" for m in seeks)
    # The clicks keep the map's tempo: no rate beyond the tracker's own wobble (its beat
    # period is a whole number of hops, 0.16 % off here, corrected now and then).
    assert all(abs(m.rate_ppm - 1_000_000) <= 3000 for m in seeks)
    final_start = seeks[-1].at_us - seeks[-1].position_us
    music = RealTimeClicks.music_at_us
    # onto the music within 30 ms (clicks from silence read ~15-20 ms early, docs/native.md)
    assert abs(final_start - music) / 1000 < 30, stats

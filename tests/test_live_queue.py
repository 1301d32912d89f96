"""The device's live beat queue and envelope block (firmware/live.py) on CPython."""

from __future__ import annotations

import pytest

from gridcast.firmware.live import LiveBeats, LiveEnvelope
from gridcast.protocol import messages, reasons
from gridcast.protocol.errors import ProtocolError

T0 = 1_795_000_000_000_000


def _beats(generation: int, first: int, times: list[int], session: int = 1):
    n = len(times)
    return messages.decode(messages.encode(
        "live_beats", session=session, generation=generation, first_index=first,
        times_us=times, beat_in_bar=[1] * n, strength=[9] * n))


def _drain(q: LiveBeats) -> list[tuple[int, int]]:
    out = []
    while (number := q.peek_number()) >= 0:
        out.append((number, q.times[q.next]))
        q.done()
    return out


def test_a_newer_generation_replaces_what_has_not_fired_and_never_refires():
    q = LiveBeats()
    assert q.replace(_beats(1, 10, [T0, T0 + 500, T0 + 1000])) == reasons.OK
    assert q.peek_number() == 10
    q.done()  # beat 10 fired
    assert q.replace(_beats(2, 10, [T0 + 7, T0 + 507, T0 + 1007, T0 + 1507])) == reasons.OK
    assert _drain(q) == [(11, T0 + 507), (12, T0 + 1007), (13, T0 + 1507)]


def test_stale_generations_change_nothing_and_a_new_session_starts_over():
    q = LiveBeats()
    q.replace(_beats(5, 0, [T0, T0 + 1]))
    q.done()
    assert q.replace(_beats(5, 0, [T0 + 9])) == reasons.REPLAYED
    assert q.replace(_beats(4, 0, [T0 + 9])) == reasons.REPLAYED
    assert _drain(q) == [(1, T0 + 1)]
    assert q.replace(_beats(1, 0, [T0 + 50], session=2)) == reasons.OK  # agent restarted
    assert _drain(q) == [(0, T0 + 50)]


def test_an_empty_list_cancels_and_bad_lists_are_refused():
    q = LiveBeats()
    q.replace(_beats(1, 0, [T0, T0 + 1]))
    assert q.replace(_beats(2, 2, [])) == reasons.OK and q.peek_number() == -1
    with pytest.raises(ProtocolError) as err:
        q.replace(_beats(3, 0, [T0 + 5, T0 + 5]))
    assert err.value.code == reasons.INCONSISTENT
    assert q.generation == 2  # a refused list changes nothing


def test_the_envelope_block_is_read_at_agent_instants():
    env = LiveEnvelope()
    assert env.at(T0) == (0, 0, 0)
    env.replace(messages.decode(messages.encode(
        "live_env", start_us=T0, rate_mhz=50_000, bass=bytes([10, 20, 30]),
        mid=bytes([1, 2, 3]), high=bytes([7, 8, 9]))))
    assert env.at(T0) == (10, 1, 7)
    assert env.at(T0 + 20_000) == (20, 2, 8)  # 50 Hz: frame 1 from 20 ms
    assert env.at(T0 + 59_999) == (30, 3, 9)
    assert env.at(T0 + 60_000) == (0, 0, 0) and env.at(T0 - 1) == (0, 0, 0)

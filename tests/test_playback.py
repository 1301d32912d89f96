"""agent/playback.py: what goes on the wire for play, seek, rate, live beats and offsets."""

from __future__ import annotations

import asyncio

import pytest

from gridcast.agent import playback
from gridcast.protocol import messages, reasons
from gridcast.protocol.errors import ProtocolError
from tests.test_live_follow import RecordingTransport

T0 = 1_795_000_000_000_000


def _sent(coro_factory) -> list[tuple[str, messages.Message]]:
    transport = RecordingTransport()

    async def go():
        async with transport:
            await coro_factory(transport)

    asyncio.run(go())
    return [(device, messages.decode(payload)) for device, payload in transport.sent]


def test_play_seek_and_rate_carry_the_rate():
    sent = _sent(lambda t: asyncio.gather(
        playback.play(t, ["a", "b"], "song", start_us=T0, rate_ppm=940_000),
        playback.seek(t, None, 5_000_000, T0 + 1, rate_ppm=1_060_000),
        playback.set_rate(t, ["a"], 1_020_000, at_us=T0 + 2)))
    kinds = [(d, m.kind) for d, m in sent]
    assert kinds == [("a", "play"), ("b", "play"), ("*", "seek"), ("a", "rate")]
    assert sent[0][1].rate_ppm == 940_000 and sent[0][1].start_us == T0
    assert sent[2][1].rate_ppm == 1_060_000 and sent[2][1].position_us == 5_000_000
    assert sent[3][1].fields == {"rate_ppm": 1_020_000, "at_us": T0 + 2}


@pytest.mark.parametrize("call", [
    lambda t: playback.play(t, None, "song", rate_ppm=500_000),
    lambda t: playback.seek(t, None, 0, T0, rate_ppm=1_100_000),
    lambda t: playback.set_rate(t, None, 919_999),
])
def test_a_rate_out_of_range_is_refused_before_anything_is_sent(call):
    transport = RecordingTransport()

    async def go():
        async with transport:
            await call(transport)

    with pytest.raises(ProtocolError) as err:
        asyncio.run(go())
    assert err.value.code == reasons.RATE_OUT_OF_RANGE and "92-108 %" in str(err.value)
    assert transport.sent == []


def test_live_beats_envelopes_and_the_light_offset():
    sent = _sent(lambda t: asyncio.gather(
        playback.send_live_beats(t, None, 9, 1, 40, [T0, T0 + 500_000], [1, 2], [255, 100]),
        playback.send_live_envelope(t, ["a"], T0, 50_000, b"\x01\x02", b"\x03\x04", b"\x05\x06"),
        playback.set_light_offset(t, "a", -12_500)))
    beats, env, offset = (m for _, m in sent)
    assert beats.fields == {"session": 9, "generation": 1, "first_index": 40,
                            "times_us": [T0, T0 + 500_000], "beat_in_bar": [1, 2],
                            "strength": [255, 100]}
    assert env.kind == "live_env" and env.bass == b"\x01\x02"
    assert offset.fields == {"offset_us": -12_500} and sent[2][0] == "a"
    with pytest.raises(ProtocolError) as err:
        playback.live_beats_message(9, 2, 0, [T0 + 1, T0], [1, 1], [0, 0])
    assert err.value.code == reasons.INCONSISTENT
    with pytest.raises(ProtocolError):
        asyncio.run(playback.set_light_offset(RecordingTransport(), "a", 2_000_000))

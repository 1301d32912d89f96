"""Property tests (hypothesis) for the codec, every message, framing and bundles."""

import io

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridcast.protocol import bundle_builder, bundle_reader, codec, frames, messages, reasons
from gridcast.protocol.errors import ProtocolError
from tests.vectors.make_vectors import KEY, KEY_ID, sample_source

u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=40).filter(lambda s: len(s.encode()) <= messages.MAX_TEXT_BYTES)
FIELD_STRATEGIES = {
    "u": u64, "i": i64, "s": text, "b": st.binary(max_size=300),
    "li": st.lists(i64, max_size=50), "?i": st.none() | i64,
}
plain = st.recursive(
    st.none() | st.booleans() | i64 | u64 | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=5), children, max_size=6),
    max_leaves=20)


@given(plain)
def test_codec_writes_what_msgpack_writes_and_reads_it_back(obj):
    data = codec.encode(obj)
    assert data == msgpack.packb(obj, use_bin_type=True)
    assert codec.decode(data) == obj


@pytest.mark.parametrize("kind", sorted(messages.TAGS))
@given(data=st.data())
def test_every_message_round_trips(kind, data):
    spec = messages.SCHEMA[messages.TAGS[kind]][1]
    fields = {name: data.draw(FIELD_STRATEGIES[ftype], label=name) for name, ftype, _ in spec}
    wire = messages.encode(kind, **fields)
    back = messages.decode(wire)
    assert back.kind == kind and back.fields == fields
    # A newer sender's extra trailing field is ignored by this decoder.
    extended = [*msgpack.unpackb(wire, raw=False), "from the future"]
    assert messages.decode(msgpack.packb(extended, use_bin_type=True)).fields == fields


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_fail_with_a_reason(data):
    try:
        messages.decode(data)
    except ProtocolError as exc:
        assert exc.code in reasons.NAMES and exc.code != reasons.OK and str(exc)


@given(st.lists(st.binary(max_size=600), max_size=8),
       st.lists(st.binary(max_size=12).filter(lambda g: b"\xa5" not in g), max_size=8),
       st.integers(min_value=1, max_value=64))
def test_frames_survive_garbage_and_any_split(payloads, garbage, step):
    stream = b""
    for i, p in enumerate(payloads):
        stream += (garbage[i] if i < len(garbage) else b"") + frames.encode_frame(p)
    d = frames.Deframer()
    got = []
    for i in range(0, len(stream), step):
        got.extend(d.feed(stream[i:i + step]))
    assert got == payloads
    assert len(d.buf) <= frames.DEFAULT_MAX_PAYLOAD + frames.OVERHEAD_BYTES


GOOD = bundle_builder.build(sample_source(), KEY, KEY_ID)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(min_value=1, max_value=255))
def test_no_single_byte_change_is_ever_accepted(position, xor):
    data = bytearray(GOOD)
    data[position] ^= xor
    with pytest.raises(ProtocolError) as err:
        bundle_reader.verify(io.BytesIO(bytes(data)), len(data), {KEY_ID: KEY}, 0x000100)
    assert err.value.code != reasons.OK


@given(st.integers(min_value=0, max_value=len(GOOD) - 1))
def test_every_truncation_is_rejected(cut):
    with pytest.raises(ProtocolError) as err:
        bundle_reader.verify(io.BytesIO(GOOD[:cut]), cut, {KEY_ID: KEY}, 0x000100)
    assert err.value.code in (reasons.TRUNCATED, reasons.MALFORMED, reasons.INCONSISTENT)


def test_sizes_stay_within_budget_at_128_bpm():
    import numpy as np

    minutes = 5
    beats = np.arange(0.3, minutes * 60 - 0.2, 60 / 128)
    n = len(beats)
    src = bundle_builder.BundleSource(
        "t", bytes(32), 1, 0, minutes * 60.0, 128.0, beats, [i % 4 + 1 for i in range(n)],
        np.linspace(0, 1, n), 50.0, tuple(np.zeros(minutes * 3000) for _ in range(3)))
    whole = len(bundle_builder.build(src, KEY, KEY_ID))
    beat_bytes = 6 * n  # deltas (4) + beat_in_bar (1) + strength (1) per beat
    assert beat_bytes / minutes <= 3 * 1024
    assert whole / minutes <= 12 * 1024

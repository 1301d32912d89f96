"""Bundle transfer between the sans-I/O sender and receiver, with faults."""

import hashlib
import random

import pytest

from gridcast.protocol import bundle_builder, messages, reasons, transfer
from tests.vectors.make_vectors import KEY, KEY_ID, sample_source

FW = 0x000100
GOOD = bundle_builder.build(sample_source(), KEY, KEY_ID)


def run(bundle, store, loss=0.0, duplicate=0.0, reorder=0.0, seed=0, transfer_id=1,
        version=3, key=KEY, window=4, chunk=256, max_steps=20000):
    rng = random.Random(seed)
    rx = transfer.Receiver(store, {KEY_ID: key}, FW)
    tx = transfer.Sender(bundle, transfer_id, chunk, window, "vector-song", version)
    wire = [tx.offer()]
    steps = 0
    while not tx.finished and steps < max_steps:
        steps += 1
        if not wire:
            wire = tx.on_timeout()
            continue
        if reorder and len(wire) > 1 and rng.random() < reorder:
            i = rng.randrange(len(wire))
            wire.append(wire.pop(i))
        m = wire.pop(0)
        if rng.random() < duplicate:
            wire.insert(0, m)
        if rng.random() < loss:
            continue
        reply = rx.handle(messages.decode(m.payload))
        if reply is not None and rng.random() >= loss:
            wire.extend(tx.on_reply(messages.decode(reply.payload)))
    return tx


@pytest.mark.parametrize(("loss", "duplicate", "reorder"), [
    (0, 0, 0), (0.2, 0, 0), (0, 0.3, 0), (0, 0, 0.3), (0.15, 0.15, 0.15)])
def test_transfer_completes_through_loss_duplication_and_reordering(loss, duplicate, reorder):
    store = transfer.MemoryStore()
    tx = run(GOOD, store, loss, duplicate, reorder)
    assert tx.state == "done"
    assert store.active_entry[3] == GOOD


def test_no_loss_transfer_needs_one_ack_per_chunk():
    store = transfer.MemoryStore()
    rx = transfer.Receiver(store, {KEY_ID: KEY}, FW)
    tx = transfer.Sender(GOOD, 9, 512, 4, "vector-song", 3)
    sent = 0
    wire = [tx.offer()]
    while wire:
        m = wire.pop(0)
        sent += 1
        reply = rx.handle(messages.decode(m.payload))
        if reply is not None:
            wire.extend(tx.on_reply(messages.decode(reply.payload)))
    chunks = -(-len(GOOD) // 512)
    assert tx.state == "done" and sent == chunks + 2  # offer + chunks + activate


def _deliver(rx, kind, **fields):
    return messages.decode(rx.handle(messages.decode(messages.encode(kind, **fields))).payload)


@pytest.mark.parametrize(("bundle", "key", "reason"), [
    (bundle_builder.build(sample_source(), bytes(32), KEY_ID), KEY, reasons.BAD_SIGNATURE),
    (bundle_builder.build(sample_source(), KEY, "nobody"), KEY, reasons.UNKNOWN_KEY),
    (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), KEY, reasons.BAD_SIGNATURE),
])
def test_bad_bundles_are_rejected_and_the_active_one_stays(bundle, key, reason):
    store = transfer.MemoryStore()
    assert run(GOOD, store).state == "done"
    before = store.active_entry
    tx = run(bundle, store, transfer_id=2, version=4, key=key)
    assert tx.state == "failed" and tx.error[0] == reason
    assert store.active_entry == before and store.temp is None


def test_older_version_of_the_active_track_is_refused_as_replay():
    store = transfer.MemoryStore()
    assert run(GOOD, store, version=3).state == "done"
    other = bundle_builder.build(sample_source(10.0), KEY, KEY_ID)
    tx = run(other, store, transfer_id=2, version=2)
    assert tx.state == "failed" and tx.error[0] == reasons.REPLAYED


def test_offer_of_the_active_bundle_answers_activated_at_once():
    store = transfer.MemoryStore()
    assert run(GOOD, store).state == "done"
    rx = transfer.Receiver(store, {KEY_ID: KEY}, FW)
    reply = _deliver(rx, "bundle_offer", transfer_id=5, size=len(GOOD),
                     sha256=hashlib.sha256(GOOD).digest(), chunk_size=256,
                     track_id="vector-song", bundle_version=3)
    assert reply.kind == "activated"


def test_offered_digest_must_match_the_bytes():
    store = transfer.MemoryStore()
    rx = transfer.Receiver(store, {KEY_ID: KEY}, FW)
    _deliver(rx, "bundle_offer", transfer_id=1, size=len(GOOD), sha256=bytes(32),
             chunk_size=len(GOOD), track_id="vector-song", bundle_version=3)
    reply = _deliver(rx, "chunk", transfer_id=1, offset=0, data=GOOD)
    assert reply.kind == "rejected" and reply.reason == reasons.DIGEST_MISMATCH


@pytest.mark.parametrize(("kind", "fields", "reason"), [
    ("bundle_offer", dict(transfer_id=1, size=10**7), reasons.TOO_LARGE),
    ("chunk", dict(transfer_id=42, offset=0, data=b"x"), reasons.NO_TRANSFER),
    ("activate", dict(transfer_id=1), reasons.NO_TRANSFER),
])
def test_out_of_place_messages_get_reason_codes(kind, fields, reason):
    rx = transfer.Receiver(transfer.MemoryStore(), {KEY_ID: KEY}, FW)
    reply = _deliver(rx, kind, **fields)
    assert reply.reason == reason


def test_chunk_past_the_end_is_refused():
    rx = transfer.Receiver(transfer.MemoryStore(), {KEY_ID: KEY}, FW)
    _deliver(rx, "bundle_offer", transfer_id=1, size=100, sha256=bytes(32), chunk_size=64,
             track_id="t", bundle_version=1)
    reply = _deliver(rx, "chunk", transfer_id=1, offset=0, data=b"x" * 101)
    assert reply.kind == "chunk_nack" and reply.reason == reasons.BAD_OFFSET


def test_a_lost_activated_reply_is_answered_again():
    store = transfer.MemoryStore()
    rx = transfer.Receiver(store, {KEY_ID: KEY}, FW)
    _deliver(rx, "bundle_offer", transfer_id=3, size=len(GOOD),
             sha256=hashlib.sha256(GOOD).digest(), chunk_size=len(GOOD),
             track_id="vector-song", bundle_version=3)
    _deliver(rx, "chunk", transfer_id=3, offset=0, data=GOOD)
    first = _deliver(rx, "activate", transfer_id=3)
    again = _deliver(rx, "activate", transfer_id=3)  # the sender never saw `first`
    assert first.kind == again.kind == "activated"
    assert store.previous_entry is None  # activated once, not twice

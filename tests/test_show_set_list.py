"""Set lists from the command line: M3U/M3U8 entries, folders, bad input, the gating of a
bundle's activation, and `gridcast play` choosing the show or the lights-only path."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from gridcast.agent.clock import now_us
from gridcast.agent.show.gate import HANDOVER_LEAD_S, GatedActivation
from gridcast.host import cli
from gridcast.host.library.set_list import audio_paths, decoder, is_set_list_input, read_m3u
from gridcast.protocol import messages
from gridcast.protocol.errors import GridcastError


def test_m3u_entries_are_read_relative_to_the_list(tmp_path):
    (tmp_path / "music").mkdir()
    listing = tmp_path / "music" / "set.m3u8"
    listing.write_text("#EXTM3U\n#EXTINF:123,Artist - One\none.flac\n\n/abs/two.wav\n"
                       "file:///abs/three.ogg\n", encoding="utf-8")
    assert read_m3u(str(listing)) == [str(tmp_path / "music" / "one.flac"), "/abs/two.wav",
                                      "/abs/three.ogg"]


def test_folders_and_lists_expand_in_order(tmp_path):
    for name in ("b.wav", "a.flac", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "set.m3u").write_text("b.wav\n")
    assert audio_paths([str(tmp_path / "set.m3u"), str(tmp_path)]) == [
        str(tmp_path / "b.wav"), str(tmp_path / "a.flac"), str(tmp_path / "b.wav")]
    assert is_set_list_input(str(tmp_path)) and is_set_list_input("x.M3U")
    assert not is_set_list_input("song.gcb") and not is_set_list_input("track-id")


def test_a_list_without_audio_names_what_was_given(tmp_path):
    (tmp_path / "empty.m3u").write_text("#EXTM3U\n")
    with pytest.raises(GridcastError, match=r"no audio files in .*empty\.m3u"):
        audio_paths([str(tmp_path / "empty.m3u")])


def test_decoder_reads_frames_by_channels_and_names_a_bad_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), np.zeros((4410, 2), np.float32), 44100)
    samples, rate = decoder(str(good))()
    assert samples.shape == (4410, 2) and rate == 44100.0
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio" * 10)
    with pytest.raises(GridcastError, match=r"bad\.flac: cannot decode"):
        decoder(str(bad))()


def test_gated_transport_holds_activate_only():
    sent: list[tuple[str, int]] = []

    class Inner:
        window = 3

        async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
            sent.append((messages.decode(payload).kind, now_us()))

    async def scenario() -> int:
        gate = GatedActivation(now_us() + 300_000)
        wrapped = gate.wrap(Inner())  # type: ignore[arg-type]
        await wrapped.send("d", "bundle", messages.encode("chunk", transfer_id=1, offset=0,
                                                          data=b"x"))
        await wrapped.send("d", "cmd", messages.encode("activate", transfer_id=1))
        assert wrapped.window == 3
        return int(gate.at_us)

    opens = asyncio.run(scenario())
    assert sent[0][0] == "chunk" and sent[0][1] < opens
    assert sent[1][0] == "activate" and sent[1][1] >= opens


def test_devices_of_protocol_4_get_the_handover_instant_and_older_ones_the_gate():
    sent: dict[str, tuple[int, int, int]] = {}  # device -> (transfer id, at_us, sent at)

    class Inner:
        def __init__(self) -> None:
            self.hellos = {d: messages.decode(messages.encode("hello", proto_version=p,
                                                              device_id=d))
                           for d, p in (("new", messages.PROTOCOL_VERSION), ("old", 3))}

        async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
            msg = messages.decode(payload)
            sent[device_id] = (msg.transfer_id, msg.at_us, now_us())

    async def scenario() -> tuple[float, float]:
        handover = now_us() + HANDOVER_LEAD_S * 1e6 + 150_000  # opens in 0.15 s for "new"
        gate = GatedActivation(now_us() + 400_000, handover)  # ... in 0.4 s for "old"
        wrapped = gate.wrap(Inner())  # type: ignore[arg-type]
        await asyncio.gather(*(wrapped.send(d, "cmd", messages.encode("activate", transfer_id=9))
                               for d in ("new", "old")))
        return handover, gate.at_us

    handover, legacy = asyncio.run(scenario())
    assert sent["new"][:2] == (9, round(handover))
    assert handover - HANDOVER_LEAD_S * 1e6 <= sent["new"][2] < legacy
    assert sent["old"][:2] == (9, 0) and sent["old"][2] >= legacy  # the field it ignores: 0


def test_the_same_bundle_next_is_played_ahead_only_to_devices_that_hand_over():
    """Nothing to activate (every device holds the next bundle): its play goes out
    HANDOVER_LEAD_S before the boundary when all devices hand over, else at the gate."""
    class Inner:
        def __init__(self) -> None:
            self.hellos = {d: messages.decode(messages.encode("hello", proto_version=p,
                                                              device_id=d))
                           for d, p in (("new", messages.PROTOCOL_VERSION), ("old", 3))}

    async def opened(device_ids: list[str]) -> tuple[int, float, float]:
        handover = now_us() + HANDOVER_LEAD_S * 1e6 + 150_000  # 0.15 s for protocol 4
        gate = GatedActivation(now_us() + 400_000, handover)  # 0.4 s for the others
        await gate.wait_for_play(Inner(), device_ids)  # type: ignore[arg-type]
        return now_us(), handover - HANDOVER_LEAD_S * 1e6, gate.at_us

    at, early, legacy = asyncio.run(opened(["new"]))
    assert early <= at < legacy
    at, early, legacy = asyncio.run(opened(["new", "old"]))
    assert at >= legacy


def test_play_of_audio_needs_the_site_key(tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(str(song), np.zeros(44100 * 6, np.float32), 44100)
    assert cli.main(["play", str(song), "--broker", "mqtt://127.0.0.1:1"]) == 1
    assert "needs --key-file" in capsys.readouterr().err

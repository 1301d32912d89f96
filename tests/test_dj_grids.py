"""DJ grids in and out, on small files written here from the formats' specifications:
rekordbox XML and ANLZ (built with pyrekordbox's construct structs), Traktor NML, an MP3
with Serato GEOB frames (written with mutagen), damaged libraries, and round trips."""

from __future__ import annotations

import base64
import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from gridcast.host import extras
from gridcast.host.beatmaps import beatmap
from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.cli import main
from gridcast.host.djgrids import (
    importing,
    matching,
    rekordbox_anlz,
    rekordbox_export,
    rekordbox_xml,
    serato_tags,
    traktor_nml,
)
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import TempoMarker, beats_from_markers
from gridcast.host.djgrids.library import file_url_from_path
from tests.conftest import click_track

SR = 22050


def rekordbox_track(track_id: int, location: str, tempos: list[tuple[float, float, int]],
                    total_s: int = 20, marks: str = "") -> str:
    tempo = "".join(f'<TEMPO Inizio="{t:.3f}" Bpm="{b:.2f}" Metro="4/4" Battito="{k}"/>'
                    for t, b, k in tempos)
    return (f'<TRACK TrackID="{track_id}" Name="T{track_id}" Artist="A" TotalTime="{total_s}" '
            f'Location="{file_url_from_path(location)}">{tempo}{marks}</TRACK>')


def rekordbox_xml_text(tracks: list[str], version: str = "1.0.0", close: bool = True) -> str:
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS Version="{version}">'
            '<PRODUCT Name="rekordbox" Version="6.8.5" Company="AlphaTheta"/>'
            f'<COLLECTION Entries="{len(tracks)}">\n' + "\n".join(tracks))
    return head + ("\n</COLLECTION></DJ_PLAYLISTS>\n" if close else "\n")


@pytest.fixture
def clicks(tmp_path) -> tuple[str, np.ndarray]:
    """A 10 s click track at 120 BPM from 0.5 s, as WAV."""
    signal, beats = click_track(120.0, 10.0, SR)
    path = str(tmp_path / "music" / "clicks.wav")
    os.makedirs(os.path.dirname(path))
    sf.write(path, signal, SR)
    return path, beats


def test_variable_tempo_markers_give_beats_between_them():
    markers = [TempoMarker(1.0, 120.0, 1), TempoMarker(5.0, 150.0, 1)]
    beats, bib = beats_from_markers(markers, 8.0)
    assert np.allclose(beats[:3], [0.0, 0.5, 1.0])  # drawn back to the start
    assert np.allclose(np.diff(beats[beats < 5.0]), 0.5)
    assert np.allclose(np.diff(beats[beats >= 5.0]), 0.4)
    assert beats[-1] <= 8.0 and 5.0 in np.round(beats, 6)
    assert list(bib[:4]) == [3, 4, 1, 2] and bib[list(np.round(beats, 6)).index(5.0)] == 1


def test_rekordbox_xml_tracks_cues_and_bad_entries(tmp_path):
    marks = ('<POSITION_MARK Name="Drop" Type="0" Start="8.000" Num="0" Red="255" Green="16" '
             'Blue="0"/><POSITION_MARK Name="" Type="4" Start="4.0" End="6.0" Num="-1"/>'
             '<POSITION_MARK Name="fade" Type="1" Start="1.0" Num="-1"/>')
    path = tmp_path / "rb.xml"
    path.write_text(rekordbox_xml_text([
        rekordbox_track(1, "/Music/a b.mp3", [(0.2, 128.0, 1), (10.2, 126.5, 3)], marks=marks),
        rekordbox_track(2, "/Music/c.mp3", [(0.0, 999.0, 1)]),
        '<TRACK TrackID="3" Name="New" Location="file://localhost/Music/d.mp3"/>',
    ], version="2.0.0"))
    lib = rekordbox_xml.read(str(path))
    assert [t.track_id for t in lib.tracks] == ["1"]
    track = lib.tracks[0]
    assert track.location == "/Music/a b.mp3" and len(track.markers) == 2
    assert track.cues == [Cue(4.0, "", "loop", "", 6.0), Cue(8.0, "Drop", "hot", "#ff1000")]
    reasons = {u.track_id: u.reason for u in lib.unreadable}
    assert "999 BPM" in reasons["2"] and "no beat grid" in reasons["3"]
    assert "unknown rekordbox XML version '2.0.0'" in lib.warnings[0]


def test_a_truncated_library_still_gives_the_tracks_before_the_damage(tmp_path):
    path = tmp_path / "cut.xml"
    good = rekordbox_track(1, "/m/a.mp3", [(0.1, 120.0, 1)])
    path.write_text(rekordbox_xml_text([good, '<TRACK TrackID="2" Name="x"><TEMPO Inizio='],
                                       close=False))
    lib = rekordbox_xml.read(str(path))
    assert [t.track_id for t in lib.tracks] == ["1"]
    assert lib.unreadable[0].what == "library" and "malformed XML" in lib.unreadable[0].reason
    (tmp_path / "other.xml").write_text("<NML VERSION='19'/>")
    with pytest.raises(DjGridError, match="not a rekordbox XML collection"):
        rekordbox_xml.read(str(tmp_path / "other.xml"))


def test_traktor_nml_grid_markers_tempo_and_cues(tmp_path):
    path = tmp_path / "collection.nml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="no" ?><NML VERSION="42">'
        '<HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"/><COLLECTION ENTRIES="2">'
        '<ENTRY TITLE="Song" ARTIST="Me"><LOCATION DIR="/:Users/:me/:Music/:" FILE="s.mp3" '
        'VOLUME="Macintosh HD"/><INFO PLAYTIME="30" PLAYTIME_FLOAT="30.5"/>'
        '<TEMPO BPM="124.000000"/>'
        '<CUE_V2 NAME="AutoGrid" TYPE="4" START="250.0" LEN="0" HOTCUE="0"><GRID BPM="124.0"/>'
        '</CUE_V2><CUE_V2 NAME="Beat Marker" TYPE="4" START="15733.871" LEN="0" HOTCUE="-1">'
        '<GRID BPM="125.0"/></CUE_V2>'
        '<CUE_V2 NAME="Drop" TYPE="0" START="10000" LEN="0" HOTCUE="1" COLOR="#FF0000"/>'
        '<CUE_V2 NAME="n.n." TYPE="5" START="12000" LEN="1935.48" HOTCUE="-1"/></ENTRY>'
        '<ENTRY TITLE="Unanalyzed"><LOCATION DIR="/:x/:" FILE="u.mp3" VOLUME="C:"/></ENTRY>'
        '</COLLECTION></NML>')
    lib = traktor_nml.read(str(path))
    assert "unknown NML version '42'" in lib.warnings[0]
    (track,) = lib.tracks
    assert track.location == "/Users/me/Music/s.mp3" and track.duration_s == 30.5
    assert np.allclose([(m.time_s, m.bpm) for m in track.markers],
                       [(0.25, 124.0), (15.733871, 125.0)])
    assert track.cues[0] == Cue(10.0, "Drop", "hot", "#ff0000")
    assert track.cues[1].kind == "loop" and np.isclose(track.cues[1].end_s, 13.93548)
    assert "no grid marker" in lib.unreadable[0].reason
    bm = importing.to_beatmap(track, None)
    gaps = np.diff(bm.beats)
    assert np.allclose(gaps[bm.beats[:-1] < 15.2], 60 / 124) and np.isclose(gaps[-1], 0.48)
    assert bm.beat_in_bar[np.argmin(np.abs(bm.beats - 15.733871))] == 1
    text = path.read_text()
    path.write_text(text[:text.index("<ENTRY TITLE=\"Unanalyzed\"") + 30])  # cut mid-entry
    cut = traktor_nml.read(str(path))
    assert [t.title for t in cut.tracks] == ["Song"] and cut.unreadable[-1].what == "library"


def _tag(kind: str, len_header: int, content: bytes) -> bytes:
    return kind.encode() + struct.pack(">II", len_header, 12 + len(content)) + content


def build_anlz(beats: np.ndarray, audio_path: str) -> tuple[bytes, bytes]:
    """A .DAT (path, beat grid, memory cue) and an .EXT (named hot cue, phrases), built
    with pyrekordbox's construct structs from the layout in docs/dj_grids.md."""
    from pyrekordbox.anlz import structs as s

    n = len(beats)
    pqtz = s.PQTZ.build({"entry_count": n, "entries": [
        {"beat": k % 4 + 1, "tempo": 12800, "time": round(t * 1000)}
        for k, t in enumerate(beats)]})
    path_bytes = audio_path.encode("utf-16-be")
    ppth = s.PPTH.build({"len_path": len(path_bytes) + 2, "path": audio_path})
    # The cue entries repeat the field name "type" in pyrekordbox's structs (the PCPT /
    # PCP2 magic and the cue's kind), which construct cannot build: bytes from the spec.
    pcpt = (b"PCPT" + struct.pack(">IIIIIHHBxHII", 28, 56, 0, 4, 0x10000, 0xFFFF, 0xFFFF, 1,
                                  1000, 2000, 0xFFFFFFFF) + bytes(16))
    pcob = struct.pack(">IHHi", 0, 0, 1, 1) + pcpt
    comment = "Drop\x00".encode("utf-16-be")
    pcp2 = (b"PCP2" + struct.pack(">IIIB3xIIB7xHHI", 16, 48 + len(comment), 1, 1, 4000,
                                  0xFFFFFFFF, 0, 0, 0, len(comment))
            + comment + bytes([1, 0xFF, 0, 0x80]))
    pco2 = struct.pack(">IHH", 1, 1, 0) + pcp2
    entry = {"u1": 0, "k1": 0, "u2": 0, "k2": 0, "u3": 0, "b": 0, "beat_2": 0, "beat_3": 0,
             "beat_4": 0, "u4": 0, "k3": 0, "u5": 0, "fill": 0, "beat_fill": 0}
    pssi = s.PSSI.build({"version": 0, "len_entries": 3, "mood": 1, "u1": bytes(6),
                         "end_beat": 17, "u2": bytes(2), "bank": 0, "u3": bytes(1),
                         "entries": [{**entry, "index": i + 1, "beat": b, "kind": k}
                                     for i, (b, k) in enumerate([(1, 1), (5, 2), (9, 5)])]})

    def anlz(tags: list[bytes]) -> bytes:
        body = b"".join(tags)
        return s.AnlzFileHeader.build({"type": "PMAI", "len_header": 28,
                                       "len_file": 28 + len(body), "u1": 1, "u2": 0x10000,
                                       "u3": 0x10000, "u4": 0}) + body

    dat = anlz([_tag("PPTH", 16, ppth), _tag("PQTZ", 24, pqtz), _tag("PCOB", 24, pcob)])
    ext = anlz([_tag("PPTH", 16, ppth), _tag("PQTZ", 24, pqtz), _tag("PCO2", 20, pco2),
                _tag("PSSI", 32, pssi)])
    return dat, ext


def test_rekordbox_anlz_grid_cues_and_phrases_become_sections(tmp_path, clicks):
    audio_path, beats = clicks
    folder = tmp_path / "PIONEER" / "USBANLZ" / "P016" / "0000875E"
    folder.mkdir(parents=True)
    dat, ext = build_anlz(beats, audio_path)
    (folder / "ANLZ0000.DAT").write_bytes(dat)
    (folder / "ANLZ0000.EXT").write_bytes(ext)
    track = rekordbox_anlz.read(str(folder / "ANLZ0000.DAT"))
    assert track.location == audio_path and np.allclose(track.beats_s, np.round(beats, 3))
    assert track.cues == [Cue(4.0, "Drop", "hot", "#ff0080")]  # the .EXT's named cues
    assert [(p.label, p.role) for p in track.phrases] == [
        ("Intro", "intro"), ("Up", "buildup"), ("Chorus", "drop")]
    assert rekordbox_anlz.phrase_role(rekordbox_anlz.MOOD_MID, "Chorus") == "chorus"
    assert rekordbox_anlz.phrase_label(rekordbox_anlz.MOOD_LOW, 6) == "Verse 2"
    out = tmp_path / "clicks.beatmap.json"
    assert main(["analyze", audio_path, "--grid-from", str(folder / "ANLZ0000.EXT"),
                 "-o", str(out)]) == 0
    bm = beatmap.load(str(out))
    assert [s.role for s in bm.sections] == ["intro", "buildup", "drop"]
    assert {s.source for s in bm.sections} == {"rekordbox"} and not bm.warnings
    assert bm.metadata["grid_source"]["phrase_mood"] == "high"
    assert main(["export-grid", str(out), "--rekordbox", str(tmp_path / "x.xml"),
                 "--sections-as-cues"]) == 0
    names = [c.name for c in rekordbox_xml.read(str(tmp_path / "x.xml")).tracks[0].cues]
    assert names == ["intro", "buildup", "Drop", "drop"]
    assert np.allclose(bm.phrases, [beats[0], beats[4], beats[8]], atol=1e-3)
    assert bm.history[-1]["source"]["format"] == "rekordbox-anlz"
    assert len(bm.envelopes["bass"]) > 0 and bm.beat_strength.std() > 0  # gridcast's own
    (folder / "ANLZ0001.DAT").write_bytes(b"PMAI" + dat[4:40])
    with pytest.raises(DjGridError, match="damaged rekordbox analysis file"):
        rekordbox_anlz.read(str(folder / "ANLZ0001.DAT"))


def test_serato_tags_in_an_mp3_and_the_audio_as_its_own_grid_source(tmp_path, capsys):
    from mutagen.id3 import GEOB, ID3

    signal, _ = click_track(120.0, 10.0, SR)
    mp3 = str(tmp_path / "song.mp3")
    sf.write(mp3, signal, SR, format="MP3")
    tags = ID3()
    grid = serato_tags.build_beatgrid([(0.5, 8)], (4.5, 130.0))  # 120 BPM for 8 beats, then 130
    cues = [Cue(1.5, "Vox", "hot", "#00ff00"), Cue(3.0, "Roll", "loop", "", 4.0)]
    for desc, data in ((serato_tags.BEATGRID, grid),
                       (serato_tags.MARKERS2, serato_tags.build_markers2(cues))):
        tags.add(GEOB(encoding=0, mime="application/octet-stream", desc=desc, data=data))
    tags.save(mp3)
    track = serato_tags.read(mp3)
    assert [(m.time_s, round(m.bpm, 3)) for m in track.markers] == [(0.5, 120.0), (4.5, 130.0)]
    assert track.cues == cues
    assert main(["analyze", mp3, "--grid-from", mp3]) == 0
    bm = beatmap.load(str(tmp_path / "song.beatmap.json"))
    assert np.allclose(np.diff(bm.beats[bm.beats < 4.4]), 0.5, atol=2e-4)  # 0.1 ms in files
    assert np.allclose(np.diff(bm.beats[bm.beats > 4.4]), 60 / 130, atol=2e-4)
    assert bm.history == [{"version": 1, **bm.history[0]}] and \
        bm.history[0]["source"] == {"format": "serato", "file": mp3, "track_id": ""}
    # FLAC: Vorbis comments holding base64 of "application/octet-stream\0\0<name>\0<payload>".
    from mutagen.flac import FLAC

    flac = str(tmp_path / "other.flac")
    sf.write(flac, signal, SR)
    tagged = FLAC(flac)
    head = b"application/octet-stream\x00\x00Serato BeatGrid\x00"
    tagged["SERATO_BEATGRID"] = base64.b64encode(head + grid).decode().rstrip("=")
    tagged.save()
    assert main(["analyze", flac, mp3, "--grid-from", "serato", "-o", str(tmp_path / "maps")]) == 0
    from_flac = beatmap.load(str(tmp_path / "maps" / "other.beatmap.json"))
    assert from_flac.history[0]["source"] == {"format": "serato", "file": flac, "track_id": ""}
    assert np.allclose(from_flac.beats, bm.beats)
    assert main(["analyze", flac, mp3, "--grid-from", mp3]) == 1
    assert "holds the grid of one track but 2 audio files" in capsys.readouterr().err
    with pytest.raises(DjGridError, match="unknown header"):
        serato_tags.parse_beatgrid(b"\x02\x00" + grid[2:], "x")
    with pytest.raises(DjGridError, match="says 3 markers but holds 2"):
        serato_tags.parse_beatgrid(grid[:2] + struct.pack(">I", 3) + grid[6:], "x")


def test_matching_by_location_then_name_and_duration(tmp_path, clicks):
    audio_path, _ = clicks
    path = tmp_path / "rb.xml"
    path.write_text(rekordbox_xml_text([
        rekordbox_track(1, audio_path, [(0.5, 120.0, 1)], total_s=10),
        rekordbox_track(2, "/elsewhere/CLICKS.wav", [(0.5, 120.0, 1)], total_s=10),
        rekordbox_track(3, "/other/clicks.wav", [(0.5, 120.0, 1)], total_s=300),
        rekordbox_track(4, "/a/dup.wav", [(0.5, 120.0, 1)], total_s=10),
        rekordbox_track(5, "/b/dup.wav", [(0.5, 120.0, 1)], total_s=10)]))
    lib = rekordbox_xml.read(str(path))
    assert matching.find_track(lib, audio_path, 10.0).track_id == "1"
    moved = str(tmp_path / "copy" / "clicks.wav")
    lib.tracks = lib.tracks[1:]
    assert matching.find_track(lib, moved, 10.0).track_id == "2"  # name, then duration
    with pytest.raises(DjGridError, match="2 tracks match"):
        matching.find_track(lib, "/x/dup.wav", 10.0)
    with pytest.raises(DjGridError, match="no track matches"):
        matching.find_track(lib, "/x/absent.wav", 10.0)


def test_round_trip_import_export_import_within_1_ms(tmp_path):
    tempos = [(0.137, 127.93, 1), (30.152, 131.27, 2), (61.004, 90.5, 1)]
    path = tmp_path / "rb.xml"
    path.write_text(rekordbox_xml_text([rekordbox_track(1, "/m/a.mp3", tempos, 120)]))
    first = importing.to_beatmap(rekordbox_xml.read(str(path)).tracks[0], None)
    out = tmp_path / "export.xml"
    rekordbox_export.write([(str(tmp_path / "a.json"), first)], str(out))
    again = importing.to_beatmap(rekordbox_xml.read(str(out)).tracks[0], None)
    assert len(again.beats) == len(first.beats)
    assert np.abs(again.beats - first.beats).max() <= 0.001
    assert np.array_equal(again.beat_in_bar, first.beat_in_bar)
    # A played grid (beats 5-15 ms off a steady tempo) needs markers on most beats.
    rng = np.random.default_rng(1)
    played = np.arange(0.3, 59.9, 0.5) + rng.uniform(-0.015, 0.015, 120)
    markers = rekordbox_export.tempo_markers(played, np.arange(len(played)) % 4 + 1)
    regenerated, _ = beats_from_markers(markers, 60.0)
    assert len(regenerated) == len(played) and np.abs(regenerated - played).max() <= 0.001
    # A 6 s silence in an analyzed map: 20 BPM (the slowest rekordbox tempo) across it.
    gapped = np.r_[played[:40], played[52:]]
    markers = rekordbox_export.tempo_markers(gapped, np.arange(len(gapped)) % 4 + 1, 60.0)
    assert min(m.bpm for m in markers) == 20.0
    regenerated, _ = beats_from_markers(markers, 60.0)
    near = np.abs(regenerated[:, None] - gapped[None, :]).min(axis=0)
    assert near.max() <= 0.001


def test_import_grids_collection_reports_every_track_and_versions_maps(tmp_path, clicks,
                                                                       capsys):
    audio_path, _ = clicks
    lib_path = tmp_path / "rb.xml"
    tracks = [rekordbox_track(1, "/DJ/Music/clicks.wav", [(0.5, 120.0, 1)], total_s=10),
              rekordbox_track(2, "/DJ/Music/gone.wav", [(0.5, 120.0, 1)], total_s=10),
              rekordbox_track(3, "/DJ/Music/bad.wav", [(0.5, -4, 1)], total_s=10)]
    lib_path.write_text(rekordbox_xml_text(tracks))
    out = tmp_path / "maps"
    args = ["import-grids", str(lib_path), "--audio-root", os.path.dirname(audio_path),
            "-o", str(out), "-j", "1", "--json"]
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    status = {t["track_id"]: (t["status"], t["reason"]) for t in report["tracks"]}
    assert status["1"] == ("written", "") and "audio not found" in status["2"][1]
    assert status["3"][0] == "failed" and "-4 BPM" in status["3"][1]
    assert os.listdir(out) == ["clicks.beatmap.json"]
    assert main(args) == 1 and json.loads(capsys.readouterr().out)["tracks"][0]["status"] \
        == "unchanged"
    tracks[0] = rekordbox_track(1, "/DJ/Music/clicks.wav", [(0.52, 120.0, 1)], total_s=10)
    lib_path.write_text(rekordbox_xml_text(tracks))
    assert main(args) == 1
    bm = beatmap.load(str(out / "clicks.beatmap.json"))
    assert bm.version == 2 and [h["change"] for h in bm.history] == ["import", "import"]
    assert bm.history[-1]["source"] == {"format": "rekordbox-xml", "file": str(lib_path),
                                        "track_id": "1"}
    assert sorted(os.listdir(out)) == ["clicks.beatmap.json", "clicks.beatmap.v1.json"]
    assert np.allclose(bm.beats[:2], [0.02, 0.52])  # drawn back to the start
    assert main(["export-grid", str(out / "clicks.beatmap.json"), "--rekordbox",
                 str(tmp_path / "check.xml")]) == 0
    assert 'Inizio="0.020"' in (tmp_path / "check.xml").read_text()
    # A track that now fails keeps its map as it was: nothing half-written, nothing lost.
    tracks[0] = rekordbox_track(1, "/DJ/Music/clicks.wav", [(0.52, 500.0, 1)], total_s=10)
    lib_path.write_text(rekordbox_xml_text(tracks))
    before = (out / "clicks.beatmap.json").read_bytes()
    assert main(args) == 1 and "500 BPM" in capsys.readouterr().out
    assert (out / "clicks.beatmap.json").read_bytes() == before
    assert sorted(os.listdir(out)) == ["clicks.beatmap.json", "clicks.beatmap.v1.json"]


def test_a_missing_extra_is_one_line_naming_it(tmp_path, clicks, monkeypatch, capsys):
    real = extras.available
    monkeypatch.setattr(extras, "available", lambda m: m != "pyrekordbox" and real(m))
    (tmp_path / "ANLZ0000.DAT").write_bytes(b"PMAI")
    assert main(["analyze", clicks[0], "--grid-from", str(tmp_path / "ANLZ0000.DAT")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("gridcast: reading rekordbox analysis files needs pyrekordbox: "
                   "pip install 'gridcast[dj]'")


def test_xml_written_by_pyrekordbox_is_read_and_ours_reads_back_in_it(tmp_path):
    from pyrekordbox.rbxml import RekordboxXml

    theirs = RekordboxXml(name="rekordbox", version="6.8.5", company="AlphaTheta")
    track = theirs.add_track("/Users/dj/Music/x y.mp3", TotalTime=60, Name="X")
    track.add_tempo(Inizio=0.1, Bpm=125.0, Metro="4/4", Battito=1)
    track.add_tempo(Inizio=30.1, Bpm=126.0, Metro="4/4", Battito=1)
    track.add_mark(Name="Hook", Type="cue", Start=12.5, Num=2)
    theirs.save(str(tmp_path / "theirs.xml"))
    (ours,) = rekordbox_xml.read(str(tmp_path / "theirs.xml")).tracks
    assert ours.location == "/Users/dj/Music/x y.mp3" and ours.duration_s == 60
    assert [(m.time_s, m.bpm) for m in ours.markers] == [(0.1, 125.0), (30.1, 126.0)]
    assert ours.cues == [Cue(12.5, "Hook", "hot")]
    bm = importing.to_beatmap(ours, None)
    rekordbox_export.write([(str(tmp_path / "x.json"), bm)], str(tmp_path / "ours.xml"))
    back = RekordboxXml(str(tmp_path / "ours.xml")).get_track(0)
    assert [(t.Inizio, t.Bpm) for t in back.tempos] == [(0.1, 125.0), (30.1, 126.0)]
    assert back.Location.endswith("Users/dj/Music/x y.mp3") and back.marks[0].Name == "Hook"


def test_without_dj_phrases_gridcast_finds_sections_on_the_djs_beats(tmp_path):
    from gridcast.host.evaluation import demo_audio

    signal, beats, _ = demo_audio.render(seconds=40.0)  # 18 bars: enough for phrases
    path = str(tmp_path / "song.wav")
    sf.write(path, signal, demo_audio.SAMPLE_RATE)
    bpm = 60.0 / float(np.median(np.diff(beats)))
    lib = tmp_path / "rb.xml"
    lib.write_text(rekordbox_xml_text([rekordbox_track(1, path, [(beats[0], bpm, 1)], 40)]))
    out = tmp_path / "song.beatmap.json"
    assert main(["analyze", path, "--grid-from", str(lib), "-o", str(out)]) == 0
    bm = beatmap.load(str(out))
    assert np.abs(bm.beats[bm.beats >= beats[0] - 0.01][:len(beats)] - beats).max() < 0.002
    assert bm.sections and {s.source for s in bm.sections} == {"analysis"}
    assert bm.history[0]["source"]["track_id"] == "1"

"""keygen and bundle build / verify / inspect, as a user runs them."""

import json
import os
import stat

import pytest

from gridcast.host.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDCAST_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def key(tmp_path):
    path = str(tmp_path / "site.key")
    assert main(["keygen", path]) == 0
    return path


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(key, capsys):
    assert os.path.getsize(key) == 32
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert main(["keygen", key]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_build_from_audio_then_verify_and_inspect(song_copy, key, tmp_path, capsys):
    out = str(tmp_path / "song.gcb")
    assert main(["bundle", "build", song_copy, "--key-file", key, "-o", out]) == 0
    assert main(["bundle", "verify", out, "--key-file", key]) == 0
    capsys.readouterr()
    assert main(["bundle", "inspect", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema_version"] == 1 and info["beats"] > 15
    assert info["size_bytes"] == os.path.getsize(out)
    assert info["duration_s"] == pytest.approx(12.0, abs=0.01)
    assert info["track_id"] == "song"


def test_same_map_gives_the_same_bytes(song_copy, key, tmp_path):
    assert main(["analyze", song_copy]) == 0
    beat_map = song_copy.replace(".wav", ".beatmap.json")
    a, b = str(tmp_path / "a.gcb"), str(tmp_path / "b.gcb")
    assert main(["bundle", "build", beat_map, "--key-file", key, "-o", a]) == 0
    assert main(["bundle", "build", beat_map, "--key-file", key, "-o", b]) == 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda data: data[:-5], "truncated"),
    (lambda data: data[:100] + bytes([data[100] ^ 4]) + data[101:], "digest_mismatch"),
])
def test_verify_rejects_damage_with_the_reason(song_copy, key, tmp_path, capsys, damage, reason):
    out = tmp_path / "song.gcb"
    assert main(["bundle", "build", song_copy, "--key-file", key, "-o", str(out)]) == 0
    out.write_bytes(damage(out.read_bytes()))
    capsys.readouterr()
    assert main(["bundle", "verify", str(out), "--key-file", key]) == 1
    assert f"rejected ({reason})" in capsys.readouterr().err


def test_verify_with_another_key_fails(song_copy, key, tmp_path, capsys):
    out = str(tmp_path / "song.gcb")
    other = str(tmp_path / "other.key")
    assert main(["bundle", "build", song_copy, "--key-file", key, "-o", out]) == 0
    assert main(["keygen", other]) == 0
    assert main(["bundle", "verify", out, "--key-file", other]) == 1
    assert "rejected (unknown_key)" in capsys.readouterr().err


def test_too_new_for_the_firmware(song_copy, key, tmp_path, capsys):
    out = str(tmp_path / "song.gcb")
    assert main(["bundle", "build", song_copy, "--key-file", key, "-o", out,
                 "--min-firmware", "2.0.0"]) == 0
    assert main(["bundle", "verify", out, "--key-file", key]) == 1
    assert "firmware_too_old" in capsys.readouterr().err


def test_missing_key_file_is_a_clear_error(song_copy, tmp_path, capsys):
    assert main(["bundle", "build", song_copy, "--key-file", str(tmp_path / "nope.key"),
                 "-o", str(tmp_path / "x.gcb")]) == 1
    assert "cannot read key file" in capsys.readouterr().err

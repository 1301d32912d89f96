"""Every saved file is written whole or not at all (host/atomic_file.py)."""

from __future__ import annotations

import os
import stat

import pytest

from gridcast.host import atomic_file
from gridcast.host.atomic_file import write_atomically


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_its_folders_and_the_default_mode(tmp_path) -> None:
    path = str(tmp_path / "a" / "b" / "map.json")
    write_atomically(path, "{}\n")
    with open(path, encoding="utf-8") as f:
        assert f.read() == "{}\n"
    assert _mode(path) == 0o644
    assert os.listdir(tmp_path / "a" / "b") == ["map.json"]  # no temporary file left


def test_a_replaced_file_keeps_its_mode_unless_one_is_given(tmp_path) -> None:
    path = str(tmp_path / "calibration.toml")
    write_atomically(path, b"one")
    os.chmod(path, 0o640)
    write_atomically(path, "two")
    assert _mode(path) == 0o640
    write_atomically(path, b"key", mode=0o600)
    assert _mode(path) == 0o600
    with open(path, "rb") as f:
        assert f.read() == b"key"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "set-list.json")
    write_atomically(path, "old")

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_file.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, "new")
    monkeypatch.undo()
    with open(path, encoding="utf-8") as f:
        assert f.read() == "old"
    assert os.listdir(tmp_path) == ["set-list.json"]

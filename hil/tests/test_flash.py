"""Flashing with mpremote, against the MicroPython unix port on a pty (socat) or a board."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from gridcast.agent.simulation.devices import micropython_binary
from gridcast.host.cli import main


@pytest.fixture
def board_on_pty(tmp_path, target):
    """A pty with a MicroPython REPL behind it; its working folder is the device's disk."""
    if target != "sim":
        yield target.split(":", 1)[1], None
        return
    socat = shutil.which("socat")
    assert socat, "socat is needed (scripts/setup installs it)"
    disk = tmp_path / "disk"
    disk.mkdir()
    link = str(tmp_path / "board")
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={link}",
                             f"EXEC:{micropython_binary()},pty,stderr,setsid,ctty,raw,echo=0"],
                            cwd=disk, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not os.path.exists(link) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield link, disk
    proc.terminate()
    proc.wait()


@pytest.fixture
def key_file(tmp_path):
    path = str(tmp_path / "site.key")
    assert main(["keygen", path]) == 0
    return path


def test_flash_copies_and_verifies_the_firmware(board_on_pty, key_file, capsys, target):
    port, disk = board_on_pty
    board = "sim" if target == "sim" else "esp32s3"
    assert main(["flash", "--port", port, "--board", board, "--device-id", "stage-1",
                 "--key-file", key_file, "--broker", "10.0.0.2:1883"]) == 0
    assert "files written and verified" in capsys.readouterr().err
    if disk is not None:
        assert (disk / "main.py").exists() and (disk / "config.json").exists()
        assert (disk / "lib" / "gridcast" / "firmware" / "app.py").exists()
        assert '"device_id": "stage-1"' in (disk / "config.json").read_text()


def test_no_board_on_the_port_is_a_clear_error(tmp_path, key_file, capsys):
    missing = str(tmp_path / "ttyUSB9")
    assert main(["flash", "--port", missing, "--board", "sim", "--device-id", "x",
                 "--key-file", key_file]) == 1
    assert f"no MicroPython board answered on {missing}" in capsys.readouterr().err

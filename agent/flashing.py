"""Putting gridcast on a board: MicroPython itself (esptool), then our files (mpremote).

Files are staged in a temporary folder laid out as the device's filesystem and
copied in one mpremote session (``resume``: no soft reset on connect, which the
unix-port simulator would not survive), then read back: the device hashes every
file and the hashes must match what was staged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

from gridcast.agent import device_files
from gridcast.protocol.errors import GridcastError


class FlashError(GridcastError):
    """The board could not be written or did not answer."""


def stage(board: str, device_id: str, key: bytes, broker: str = "", led_count: int = 16,
          led_pin: int = 48, config_text: str | None = None) -> str:
    """A folder holding exactly what goes on the device: lib/, main.py, config.json."""
    folder = tempfile.mkdtemp(prefix="gridcast-flash-")
    device_files.write_library(os.path.join(folder, "lib"), board)
    board_args = {"led_pin": led_pin, "led_count": led_count} if board == "esp32s3" else {}
    with open(os.path.join(folder, "main.py"), "w") as f:
        f.write(device_files.main_py(board, **board_args))
    with open(os.path.join(folder, "config.json"), "w") as f:
        # A provisioned config (gridcast provision) carries the broker credentials.
        f.write(config_text if config_text is not None else
                device_files.config_json(device_id, key, broker, led_count, led_pin))
    return folder


def manifest(folder: str) -> dict[str, str]:
    """Device path (relative to the device's working folder, / on a board) -> SHA-256."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            with open(path, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def _mpremote(port: str, *args: str, on_line: Callable[[str], None] | None = None,
              timeout_s: float = 300) -> str:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if on_line:
            on_line(line.rstrip())
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise FlashError(f"{port}: the board stopped answering during flashing") from exc
    text = "\n".join(lines)
    if proc.returncode != 0:
        hint = ("no MicroPython board answered on " + port + " (is it plugged in, is "
                "MicroPython on it, is another program using the port?)")
        if "failed to access" in text or "could not enter raw repl" in text \
                or "No such file" in text:
            raise FlashError(hint)
        raise FlashError(f"{port}: mpremote failed: {text.splitlines()[-1] if lines else ''}")
    return text


def copy(port: str, folder: str, on_file: Callable[[str], None] | None = None) -> None:
    def line(text: str) -> None:
        if (on_file and text.startswith("cp ")) or (on_file and "->" in text):
            on_file(text)

    _mpremote(port, "fs", "cp", "-r", os.path.join(folder, "lib"), ":lib",
              "+", "fs", "cp", os.path.join(folder, "main.py"), ":main.py",
              "+", "fs", "cp", os.path.join(folder, "config.json"), ":config.json",
              on_line=line)


_HASH_SCRIPT = """
import hashlib, binascii, json
out = {}
for p in %s:
    h = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                b = f.read(512)
                if not b: break
                h.update(b)
        out[p] = binascii.hexlify(h.digest()).decode()
    except OSError:
        out[p] = None
print('GRIDCAST-HASHES ' + json.dumps(out))
"""


def verify(port: str, expected: dict[str, str]) -> list[str]:
    """Paths on the device whose content differs from what was staged (empty: all good)."""
    paths = list(expected)
    text = _mpremote(port, "exec", _HASH_SCRIPT % json.dumps(paths))
    for line in text.splitlines():
        if line.startswith("GRIDCAST-HASHES "):
            got = json.loads(line[len("GRIDCAST-HASHES "):])
            return [p for p, want in zip(paths, expected.values(), strict=True)
                    if got.get(p) != want]
    raise FlashError(f"{port}: the board did not report file hashes")


def write_image(port: str, image: str, on_line: Callable[[str], None] | None = None) -> None:
    """Write a MicroPython image with esptool (erases first)."""
    if not os.path.exists(image):
        raise FlashError(f"{image}: no such image file")
    for args in (["erase-flash"], ["write-flash", "0", image]):
        cmd = [sys.executable, "-m", "esptool", "--port", port, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        for text in proc.stdout.splitlines():
            if on_line:
                on_line(text)
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip().splitlines()
            raise FlashError(f"{port}: esptool {args[0]} failed: {out[-1] if out else '?'}")

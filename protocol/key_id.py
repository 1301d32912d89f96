"""A key's public name, on the host and on the device (runs on MicroPython too)."""

import binascii
import hashlib


def key_id(key):
    """A short public name for a key: 8 hex digits of a hash (reveals nothing usable)."""
    digest = hashlib.sha256(b"gridcast-key-id:" + key).digest()
    return binascii.hexlify(digest).decode()[:8]

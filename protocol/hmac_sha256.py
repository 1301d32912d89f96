"""HMAC-SHA256 (RFC 2104) over hashlib, incremental, for CPython and MicroPython.

MicroPython has no hmac module; this one feeds data as it streams past, so a
bundle is authenticated without holding it in memory.
"""

import hashlib

BLOCK_BYTES = 64


def pads(key):
    """(inner, outer) padded keys of ``key``: a caller that MACs many messages under one
    key computes them once (on a device the two 64-byte XORs cost as much as the hashing
    of a short message)."""
    key = bytes(key)
    if len(key) > BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key + bytes(BLOCK_BYTES - len(key))
    return bytes([b ^ 0x36 for b in key]), bytes([b ^ 0x5C for b in key])


class HmacSha256:
    def __init__(self, key, key_pads=None):
        inner, outer = key_pads if key_pads is not None else pads(key)
        self._outer_key = outer
        self._inner = hashlib.sha256(inner)

    def update(self, data):
        self._inner.update(data)

    def digest(self):
        outer = hashlib.sha256(self._outer_key)
        outer.update(self._inner.digest())
        return outer.digest()


def equal(a, b):
    """Compare two digests in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0

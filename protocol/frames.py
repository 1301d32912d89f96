"""Framing for byte streams (serial, BLE): sync, length, payload, CRC32.

    +------+------+----------------+---------------------------+
    | A5 C3| len  | payload        | CRC32 of len + payload    |
    | 2 B  | u16le| len bytes      | u32le                     |
    +------+------+----------------+---------------------------+

The deframer resynchronises after garbage: it drops bytes until a sync pair,
and when a length is over the limit or a CRC fails it drops that sync pair
and searches again, so one corrupt byte costs at most the frames it touches.
Its buffer never holds more than one maximum frame. Runs on CPython and
MicroPython.
"""

import struct
from binascii import crc32

from .reasons import BAD_FRAME, TOO_LARGE

SYNC = b"\xa5\xc3"
HEADER_BYTES = 4  # sync + length
TRAILER_BYTES = 4  # CRC32
OVERHEAD_BYTES = HEADER_BYTES + TRAILER_BYTES
DEFAULT_MAX_PAYLOAD = 4096
MAX_ERRORS_KEPT = 16


def encode_frame(payload, max_payload=DEFAULT_MAX_PAYLOAD):
    n = len(payload)
    if n > max_payload:
        from .errors import ProtocolError

        raise ProtocolError(TOO_LARGE, "frame payload of %d bytes over the limit %d"
                            % (n, max_payload))
    length = struct.pack("<H", n)
    crc = crc32(payload, crc32(length)) & 0xFFFFFFFF
    return SYNC + length + bytes(payload) + struct.pack("<I", crc)


class Deframer:
    """Feed it bytes as they arrive; it returns complete, CRC-checked payloads."""

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.buf = bytearray()
        self.frames = 0
        self.bad_crc = 0
        self.oversized = 0
        self.garbage_bytes = 0
        self.errors = []  # (reason code, message), the newest MAX_ERRORS_KEPT

    def _error(self, code, message):
        if len(self.errors) >= MAX_ERRORS_KEPT:
            self.errors.pop(0)
        self.errors.append((code, message))

    def drain_errors(self):
        out = self.errors
        self.errors = []
        return out

    def _skip_to_sync(self):
        i = self.buf.find(SYNC)
        if i < 0:
            # Keep a trailing A5: it may be the first half of a sync pair.
            keep = 1 if self.buf and self.buf[-1] == SYNC[0] else 0
            self.garbage_bytes += len(self.buf) - keep
            self.buf = self.buf[len(self.buf) - keep:]
            return False
        if i:
            self.garbage_bytes += i
            self.buf = self.buf[i:]
        return True

    def feed(self, data):
        self.buf.extend(data)
        out = []
        while self._skip_to_sync():
            if len(self.buf) < HEADER_BYTES:
                break
            n = self.buf[2] | (self.buf[3] << 8)
            if n > self.max_payload:
                self.oversized += 1
                self._error(TOO_LARGE, "frame length %d over the limit %d" % (n, self.max_payload))
                self._drop_sync()
                continue
            total = HEADER_BYTES + n + TRAILER_BYTES
            if len(self.buf) < total:
                break
            body = bytes(self.buf[2:HEADER_BYTES + n])
            want = struct.unpack("<I", self.buf[HEADER_BYTES + n:total])[0]
            if crc32(body) & 0xFFFFFFFF != want:
                self.bad_crc += 1
                self._error(BAD_FRAME, "CRC mismatch on a %d-byte frame" % n)
                self._drop_sync()
                continue
            out.append(body[2:])
            self.frames += 1
            self.buf = self.buf[total:]
        return out

    def _drop_sync(self):
        self.garbage_bytes += 2
        self.buf = self.buf[2:]

"""A small msgpack codec that runs on CPython and MicroPython.

MicroPython has no msgpack module, and devices must decode with bounded memory,
so gridcast carries its own: nil, bool, int (to 64 bits), float64 (decoded from
float32 too), str, bin, array and map. The encoder writes the same minimal forms
as the CPython ``msgpack`` package (checked by tests/vectors), so "canonical
bytes" mean the same on both sides.

The decoder checks every declared length against the bytes that remain and
against ``max_len`` *before* allocating, and names where it failed
(``at $[2][0]``).
"""

import struct

from .errors import ProtocolError
from .reasons import LIMIT_EXCEEDED, MALFORMED, TRUNCATED

MAX_DEPTH = 8


def encode(obj):
    out = bytearray()
    _enc(obj, out)
    return bytes(out)


def _enc(obj, out):
    if obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif isinstance(obj, int):
        _enc_int(obj, out)
    elif isinstance(obj, float):
        out.append(0xCB)
        out.extend(struct.pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
        else:
            _enc_len(n, out, 0xD9, 0xDA, 0xDB)
        out.extend(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        _enc_len(len(data), out, 0xC4, 0xC5, 0xC6)
        out.extend(data)
    elif isinstance(obj, (list, tuple)):
        n = len(obj)
        if n < 16:
            out.append(0x90 | n)
        else:
            _enc_len(n, out, None, 0xDC, 0xDD)
        for item in obj:
            _enc(item, out)
    elif isinstance(obj, dict):
        n = len(obj)
        if n < 16:
            out.append(0x80 | n)
        else:
            _enc_len(n, out, None, 0xDE, 0xDF)
        for key in obj:
            _enc(key, out)
            _enc(obj[key], out)
    else:
        raise ProtocolError(MALFORMED, "cannot encode %s" % type(obj).__name__)


def _enc_len(n, out, code8, code16, code32):
    if code8 is not None and n < 0x100:
        out.append(code8)
        out.append(n)
    elif n < 0x10000:
        out.append(code16)
        out.extend(struct.pack(">H", n))
    else:
        out.append(code32)
        out.extend(struct.pack(">I", n))


def _enc_int(v, out):
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v < 0x100:
        out.append(0xCC)
        out.append(v)
    elif 0 <= v < 0x10000:
        out.append(0xCD)
        out.extend(struct.pack(">H", v))
    elif 0 <= v < 0x100000000:
        out.append(0xCE)
        out.extend(struct.pack(">I", v))
    elif 0 <= v < 0x10000000000000000:
        out.append(0xCF)
        out.extend(struct.pack(">Q", v))
    elif -0x80 <= v < 0:
        out.append(0xD0)
        out.extend(struct.pack(">b", v))
    elif -0x8000 <= v < 0:
        out.append(0xD1)
        out.extend(struct.pack(">h", v))
    elif -0x80000000 <= v < 0:
        out.append(0xD2)
        out.extend(struct.pack(">i", v))
    elif -0x8000000000000000 <= v < 0:
        out.append(0xD3)
        out.extend(struct.pack(">q", v))
    else:
        raise ProtocolError(LIMIT_EXCEEDED, "integer %d does not fit in 64 bits" % v)


def _path(where):
    """The text of a place in the object ("$[2][0]"). Places are kept as (parent, format,
    item) and only written out for an error: formatting one per element would be most of
    the cost of decoding a list on a device."""
    if isinstance(where, tuple):
        return where[1] % (_path(where[0]), where[2])
    return where


class Decoder:
    """Decodes one msgpack object from ``data`` (bytes or memoryview)."""

    def __init__(self, data, max_len=65536):
        self.data = data
        self.pos = 0
        self.max_len = max_len

    def decode_all(self):
        obj = self.decode("$", 0)
        if self.pos != len(self.data):
            raise ProtocolError(MALFORMED, "%d unexpected bytes after the object at offset %d"
                                % (len(self.data) - self.pos, self.pos))
        return obj

    def _take(self, n, where):
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError(TRUNCATED, "data ends %d bytes early at %s"
                                % (end - len(self.data), _path(where)))
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def _length(self, n, where):
        if n > self.max_len:
            raise ProtocolError(LIMIT_EXCEEDED, "length %d over the limit %d at %s"
                                % (n, self.max_len, _path(where)))
        return n

    def decode(self, where, depth):
        if depth > MAX_DEPTH:
            raise ProtocolError(LIMIT_EXCEEDED, "nesting deeper than %d at %s"
                                % (MAX_DEPTH, _path(where)))
        pos = self.pos
        if pos >= len(self.data):
            raise ProtocolError(TRUNCATED, "data ends 1 bytes early at %s" % _path(where))
        b = self.data[pos]  # one byte without a slice: this runs for every item
        self.pos = pos + 1
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0xA0 <= b <= 0xBF:
            return self._str(b & 0x1F, where)
        if 0x90 <= b <= 0x9F:
            return self._array(b & 0x0F, where, depth)
        if 0x80 <= b <= 0x8F:
            return self._map(b & 0x0F, where, depth)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        size = _UINT_SIZE.get(b)
        if size is not None:
            return int.from_bytes(self._take(size, where), "big")
        fmt = _FIXED.get(b)
        if fmt is not None:
            size, code = fmt
            return struct.unpack(code, self._take(size, where))[0]
        if b in _LEN_SIZE:
            size, kind = _LEN_SIZE[b]
            n = int.from_bytes(self._take(size, where), "big")
            if kind == 0:
                return self._str(n, where)
            if kind == 1:
                return bytes(self._take(self._length(n, where), where))
            if kind == 2:
                return self._array(n, where, depth)
            return self._map(n, where, depth)
        raise ProtocolError(MALFORMED, "unsupported msgpack type 0x%02x at %s"
                            % (b, _path(where)))

    def _str(self, n, where):
        raw = self._take(self._length(n, where), where)
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeError:
            raise ProtocolError(MALFORMED, "invalid UTF-8 text at %s" % _path(where)) from None

    def _array(self, n, where, depth):
        # Every element takes at least one byte: a larger count is a lie, refuse it
        # before building a list of that size.
        if n > len(self.data) - self.pos:
            raise ProtocolError(TRUNCATED, "array of %d items in %d bytes at %s"
                                % (n, len(self.data) - self.pos, _path(where)))
        self._length(n, where)
        return [self.decode((where, "%s[%d]", i), depth + 1) for i in range(n)]

    def _map(self, n, where, depth):
        if 2 * n > len(self.data) - self.pos:
            raise ProtocolError(TRUNCATED, "map of %d entries in %d bytes at %s"
                                % (n, len(self.data) - self.pos, _path(where)))
        self._length(n, where)
        out = {}
        for i in range(n):
            key = self.decode((where, "%s.key%d", i), depth + 1)
            if isinstance(key, (list, dict)):
                raise ProtocolError(MALFORMED, "unhashable map key at %s" % _path(where))
            out[key] = self.decode((where, "%s.%s", key), depth + 1)
        return out


_FIXED = {
    0xCC: (1, ">B"), 0xCD: (2, ">H"), 0xCE: (4, ">I"), 0xCF: (8, ">Q"),
    0xD0: (1, ">b"), 0xD1: (2, ">h"), 0xD2: (4, ">i"), 0xD3: (8, ">q"),
    0xCA: (4, ">f"), 0xCB: (8, ">d"),
}
_UINT_SIZE = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # unsigned ints: no struct format to parse
# code -> (bytes of the length field, kind: 0 str, 1 bin, 2 array, 3 map)
_LEN_SIZE = {
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
    0xC4: (1, 1), 0xC5: (2, 1), 0xC6: (4, 1),
    0xDC: (2, 2), 0xDD: (4, 2), 0xDE: (2, 3), 0xDF: (4, 3),
}


def decode(data, max_len=65536):
    """Decode exactly one object filling ``data``; raise ProtocolError otherwise."""
    return Decoder(data, max_len).decode_all()

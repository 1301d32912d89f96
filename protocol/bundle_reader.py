"""Verify a bundle from a file in one pass with bounded memory, then read it in pieces.

``verify(f, size, keys, fw_version)`` streams the file once through a 256-byte
buffer, hashing the signed part (SHA-256 and HMAC-SHA256) as it goes and
keeping only small header fields and the file offsets of the large arrays;
every declared length is checked against the hard limits and against the bytes
that remain *before* anything is read. The order of checks (structure, limits,
integrity, authenticity, then meaning) means a corrupt or forged bundle is
rejected for the first thing wrong with it, with a reason code.

``BeatCursor`` and ``read_envelope`` read the arrays back from the same file,
a few bytes at a time; ``bundle_structure`` reads sections and phrases. A
bundle without a structure part reads as one without sections or phrases.
Runs on CPython and MicroPython.
"""

import hashlib
import struct

from . import bundle_format as fmt
from .bundle_structure import check_structure
from .errors import ProtocolError
from .hmac_sha256 import HmacSha256, equal
from .reasons import (
    BAD_SIGNATURE,
    DIGEST_MISMATCH,
    FIRMWARE_TOO_OLD,
    INCONSISTENT,
    LIMIT_EXCEEDED,
    MALFORMED,
    SCHEMA_UNSUPPORTED,
    TOO_LARGE,
    TRUNCATED,
    UNKNOWN_KEY,
)

BUFFER_BYTES = 256


class BundleInfo:
    """What verification learned: header fields and where each array sits in the file."""

    def __init__(self):
        self.header = {}
        self.beat_count = 0
        self.deltas_at = 0
        self.beat_in_bar_at = 0
        self.strength_at = 0
        self.env_rate_mhz = 0
        self.env_frames = 0
        self.env_at = [0, 0, 0]  # bass, mid, high
        self.section_count = 0  # structure (0 and 0 when the bundle has none)
        self.section_at = [0, 0, 0, 0]  # starts, ends, roles, energy
        self.phrase_count = 0
        self.phrases_at = 0
        self.sha256 = b""
        self.size = 0

    def __getattr__(self, name):
        header = self.__dict__.get("header", {})
        if name in header:
            return header[name]
        raise AttributeError(name)


class _Stream:
    """Sequential reader over a file that can hash what it consumes."""

    def __init__(self, f, size):
        self.f = f
        self.size = size
        self.pos = 0
        self.buf = bytearray(BUFFER_BYTES)
        self.view = memoryview(self.buf)  # sliced only for the last, partial piece
        self.hashers = []  # type: list

    def remaining(self):
        return self.size - self.pos

    def _need(self, n, where):
        if n > self.size - self.pos:
            raise ProtocolError(TRUNCATED, "bundle ends %d bytes early at %s"
                                % (n - (self.size - self.pos), where))

    def read(self, n, where):
        self._need(n, where)
        data = self.f.read(n)
        if data is None or len(data) != n:
            raise ProtocolError(TRUNCATED, "bundle file shorter than its size at %s" % where)
        for h in self.hashers:
            h.update(data)
        self.pos += n
        return data

    def skip(self, n, where):
        self._need(n, where)
        while n > 0:
            k = min(n, BUFFER_BYTES)
            piece = self.view if k == BUFFER_BYTES else self.view[:k]
            got = self.f.readinto(piece)
            if got != k:
                raise ProtocolError(TRUNCATED, "bundle file shorter than its size at %s" % where)
            for h in self.hashers:
                h.update(piece)
            self.pos += k
            n -= k

    def byte(self, where):
        return self.read(1, where)[0]


def _array_header(s, where, min_items):
    b = s.byte(where)
    if 0x90 <= b <= 0x9F:
        n = b & 0x0F
    elif b == 0xDC:
        n = struct.unpack(">H", s.read(2, where))[0]
    else:
        raise ProtocolError(MALFORMED, "expected an array at %s, got type 0x%02x" % (where, b))
    if n < min_items:
        raise ProtocolError(MALFORMED, "array of %d items at %s, expected at least %d"
                            % (n, where, min_items))
    if n > s.remaining():
        raise ProtocolError(TRUNCATED, "array of %d items in %d bytes at %s"
                            % (n, s.remaining(), where))
    return n


def _uint(s, where):
    b = s.byte(where)
    if b <= 0x7F:
        return b
    sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    if b not in sizes:
        raise ProtocolError(MALFORMED, "expected an unsigned int at %s, got type 0x%02x"
                            % (where, b))
    return int.from_bytes(s.read(sizes[b], where), "big")


def _blob_header(s, where, kind):
    """Length of a str ('s') or bin ('b') whose header comes next."""
    b = s.byte(where)
    if kind == "s" and 0xA0 <= b <= 0xBF:
        return b & 0x1F
    codes = {0xD9: 1, 0xDA: 2, 0xDB: 4} if kind == "s" else {0xC4: 1, 0xC5: 2, 0xC6: 4}
    if b not in codes:
        raise ProtocolError(MALFORMED, "expected %s at %s, got type 0x%02x"
                            % ("text" if kind == "s" else "bytes", where, b))
    return int.from_bytes(s.read(codes[b], where), "big")


def _small_blob(s, where, kind, max_bytes):
    n = _blob_header(s, where, kind)
    if n > max_bytes:
        raise ProtocolError(LIMIT_EXCEEDED, "%d bytes at %s, the limit is %d"
                            % (n, where, max_bytes))
    data = s.read(n, where)
    if kind == "b":
        return bytes(data)
    try:
        return bytes(data).decode("utf-8")
    except UnicodeError:
        raise ProtocolError(MALFORMED, "invalid UTF-8 text at %s" % where) from None


def _large_blob(s, where, expected):
    """Skip a bin of exactly ``expected`` bytes; return its offset in the file."""
    n = _blob_header(s, where, "b")
    if n != expected:
        raise ProtocolError(INCONSISTENT, "%d bytes at %s, expected %d" % (n, where, expected))
    at = s.pos
    s.skip(n, where)
    return at


def _skip_value(s, where, depth):
    """Skip one msgpack value of any type (fields appended by newer builders)."""
    if depth > 4:
        raise ProtocolError(LIMIT_EXCEEDED, "nesting too deep at %s" % where)
    b = s.byte(where)
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return
    if 0xA0 <= b <= 0xBF:
        s.skip(b & 0x1F, where)
        return
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        n = b & 0x0F if b <= 0x9F else int.from_bytes(s.read(2 if b == 0xDC else 4, where),
                                                       "big")
        if n > s.remaining():
            raise ProtocolError(TRUNCATED, "array of %d items in %d bytes at %s"
                                % (n, s.remaining(), where))
        for i in range(n):
            _skip_value(s, "%s[%d]" % (where, i), depth + 1)
        return
    fixed = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
             0xCA: 4, 0xCB: 8}
    if b in fixed:
        s.skip(fixed[b], where)
        return
    lengths = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
    if b in lengths:
        s.skip(int.from_bytes(s.read(lengths[b], where), "big"), where)
        return
    raise ProtocolError(MALFORMED, "unsupported type 0x%02x at %s" % (b, where))


def _read_header(s, info):
    n = _array_header(s, "$[0][0]", len(fmt.HEADER_FIELDS))
    magic = _small_blob(s, "$[0][0][0]", "s", 32)
    if magic != fmt.MAGIC:
        raise ProtocolError(MALFORMED, "not a gridcast bundle (magic %r)" % magic)
    schema = _uint(s, "$[0][0][1]")
    if schema > fmt.SCHEMA_VERSION:
        raise ProtocolError(SCHEMA_UNSUPPORTED, "bundle schema %d is newer than this reader (%d)"
                            % (schema, fmt.SCHEMA_VERSION))
    h = info.header
    h["magic"], h["schema_version"] = magic, schema
    h["bundle_version"] = _uint(s, "$[0][0][2]")
    h["min_firmware"] = _uint(s, "$[0][0][3]")
    h["track_id"] = _small_blob(s, "$[0][0][4]", "s", fmt.MAX_TRACK_ID_BYTES)
    h["audio_sha256"] = _small_blob(s, "$[0][0][5]", "b", fmt.DIGEST_BYTES)
    h["created_s"] = _uint(s, "$[0][0][6]")
    h["key_id"] = _small_blob(s, "$[0][0][7]", "s", fmt.MAX_KEY_ID_BYTES)
    h["duration_us"] = _uint(s, "$[0][0][8]")
    h["tempo_mbpm"] = _uint(s, "$[0][0][9]")
    h["meter"] = _uint(s, "$[0][0][10]")
    for i in range(len(fmt.HEADER_FIELDS), n):
        _skip_value(s, "$[0][0][%d]" % i, 1)
    if h["duration_us"] > fmt.MAX_DURATION_US:
        raise ProtocolError(LIMIT_EXCEEDED, "duration %d us over the limit %d at $[0][0][8]"
                            % (h["duration_us"], fmt.MAX_DURATION_US))
    if h["meter"] > fmt.MAX_METER:
        raise ProtocolError(LIMIT_EXCEEDED, "meter %d over %d at $[0][0][10]"
                            % (h["meter"], fmt.MAX_METER))


def _read_beats(s, info):
    n = _array_header(s, "$[0][1]", 4)
    count = _uint(s, "$[0][1][0]")
    if count > fmt.MAX_BEATS:
        raise ProtocolError(LIMIT_EXCEEDED, "%d beats over the limit %d at $[0][1][0]"
                            % (count, fmt.MAX_BEATS))
    info.beat_count = count
    info.deltas_at = _large_blob(s, "$[0][1][1]", 4 * count)
    info.beat_in_bar_at = _large_blob(s, "$[0][1][2]", count)
    info.strength_at = _large_blob(s, "$[0][1][3]", count)
    for i in range(4, n):
        _skip_value(s, "$[0][1][%d]" % i, 1)


def _read_envelopes(s, info):
    n = _array_header(s, "$[0][2]", 5)
    info.env_rate_mhz = _uint(s, "$[0][2][0]")
    if not 0 < info.env_rate_mhz <= fmt.MAX_ENV_RATE_MHZ:
        raise ProtocolError(LIMIT_EXCEEDED, "envelope rate %d mHz outside 1..%d at $[0][2][0]"
                            % (info.env_rate_mhz, fmt.MAX_ENV_RATE_MHZ))
    frames = _uint(s, "$[0][2][1]")
    if frames > fmt.MAX_ENV_FRAMES:
        raise ProtocolError(LIMIT_EXCEEDED, "%d envelope frames over the limit %d at $[0][2][1]"
                            % (frames, fmt.MAX_ENV_FRAMES))
    info.env_frames = frames
    for band in range(3):
        info.env_at[band] = _large_blob(s, "$[0][2][%d]" % (band + 2), frames)
    for i in range(5, n):
        _skip_value(s, "$[0][2][%d]" % i, 1)


def _read_structure(s, info):
    n = _array_header(s, "$[0][3]", 7)
    count = _uint(s, "$[0][3][0]")
    if count > fmt.MAX_SECTIONS:
        raise ProtocolError(LIMIT_EXCEEDED, "%d sections over the limit %d at $[0][3][0]"
                            % (count, fmt.MAX_SECTIONS))
    info.section_count = count
    for k, width in enumerate((4, 4, 1, 1)):
        info.section_at[k] = _large_blob(s, "$[0][3][%d]" % (k + 1), width * count)
    phrases = _uint(s, "$[0][3][5]")
    if phrases > fmt.MAX_PHRASES:
        raise ProtocolError(LIMIT_EXCEEDED, "%d phrases over the limit %d at $[0][3][5]"
                            % (phrases, fmt.MAX_PHRASES))
    info.phrase_count = phrases
    info.phrases_at = _large_blob(s, "$[0][3][6]", 4 * phrases)
    for i in range(7, n):
        _skip_value(s, "$[0][3][%d]" % i, 1)


def verify(f, size, keys, fw_version):
    """Check a bundle; return its BundleInfo or raise ProtocolError with a reason code.

    ``keys`` maps key id -> key bytes; ``fw_version`` is this firmware's version
    number (bundle_format.version_to_int). ``f`` is positioned at the start.
    """
    info, macs, mac = _parse(f, size, keys)
    key_id = info.header["key_id"]
    if key_id not in macs:
        raise ProtocolError(UNKNOWN_KEY, "bundle signed with key %r, which this device "
                            "does not hold" % key_id)
    if not equal(mac, macs[key_id].digest()):
        raise ProtocolError(BAD_SIGNATURE, "HMAC does not match key %r: the bundle was not "
                            "made with the provisioned key" % key_id)
    if info.header["min_firmware"] > fw_version:
        raise ProtocolError(FIRMWARE_TOO_OLD, "bundle needs firmware %s, this is %s"
                            % (fmt.int_to_version(info.header["min_firmware"]),
                               fmt.int_to_version(fw_version)))
    _check_beats(f, info)
    check_structure(f, info)
    return info


def inspect(f, size):
    """Structure, limits and integrity (SHA-256) only: for tools without the key."""
    info = _parse(f, size, {})[0]
    _check_beats(f, info)
    check_structure(f, info)
    return info


def _parse(f, size, keys):
    if size > fmt.MAX_BUNDLE_BYTES:
        raise ProtocolError(TOO_LARGE, "bundle of %d bytes over the limit %d"
                            % (size, fmt.MAX_BUNDLE_BYTES))
    s = _Stream(f, size)
    if s.byte("$") != 0x92:
        raise ProtocolError(MALFORMED, "not a gridcast bundle (expected a 2-item array at $)")
    sha = hashlib.sha256()
    # The MAC key is only known once the header names it; keep every key's HMAC
    # running (a device holds one or two keys).
    macs = {}
    for key_id in keys:
        macs[key_id] = HmacSha256(keys[key_id])
    s.hashers = [sha] + [macs[k] for k in macs]
    info = BundleInfo()
    sections = _array_header(s, "$[0]", 3)
    _read_header(s, info)
    _read_beats(s, info)
    _read_envelopes(s, info)
    if sections > 3:
        _read_structure(s, info)
    for i in range(4, sections):
        _skip_value(s, "$[0][%d]" % i, 1)
    s.hashers = []
    if _array_header(s, "$[1]", 2) != 2:
        raise ProtocolError(MALFORMED, "auth must hold exactly 2 items at $[1]")
    digest = _small_blob(s, "$[1][0]", "b", fmt.DIGEST_BYTES)
    mac = _small_blob(s, "$[1][1]", "b", fmt.DIGEST_BYTES)
    if s.remaining():
        raise ProtocolError(MALFORMED, "%d unexpected bytes after the bundle" % s.remaining())
    info.sha256 = sha.digest()
    info.size = size
    if not equal(digest, info.sha256):
        raise ProtocolError(DIGEST_MISMATCH, "SHA-256 of the signed part does not match: "
                            "the bundle was corrupted")
    return info, macs, mac


def _check_beats(f, info):
    """Beats must lie inside the track and be at most MAX_BEAT_DELTA_US apart."""
    total = 0
    cursor = BeatCursor(f, info)
    for i in range(info.beat_count):
        t = cursor.next_time_us()
        if i and t - total > fmt.MAX_BEAT_DELTA_US:
            raise ProtocolError(INCONSISTENT, "beat %d is %d us after the previous one"
                                % (i, t - total))
        total = t
    if total > info.header["duration_us"]:
        raise ProtocolError(INCONSISTENT, "last beat at %d us is after the end (%d us)"
                            % (total, info.header["duration_us"]))


class BeatCursor:
    """Walks the beats in order, reading 4 bytes of deltas at a time from the file."""

    def __init__(self, f, info, start_index=0):
        self.f = f
        self.info = info
        self.index = 0
        self.time_us = 0
        self._buf = bytearray(BUFFER_BYTES)  # reused: no allocation per beat
        self._view = memoryview(self._buf)
        self._filled = 0
        self._at = 0
        while self.index < start_index:
            self.next_time_us()

    def _refill(self):
        n = 4 * min(self.info.beat_count - self.index, BUFFER_BYTES // 4)
        self.f.seek(self.info.deltas_at + 4 * self.index)
        got = self.f.readinto(self._view if n == BUFFER_BYTES else self._view[:n])
        if got != n:
            raise ProtocolError(TRUNCATED, "bundle file shrank while reading beats")
        self._filled = n
        self._at = 0

    def next_time_us(self):
        """Time of the next beat in microseconds; None after the last."""
        if self.index >= self.info.beat_count:
            return None
        if self._at >= self._filled:
            self._refill()
        b, i = self._buf, self._at
        self.time_us += b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)
        self._at = i + 4
        self.index += 1
        return self.time_us

    def beat_info(self, index):
        """(beat_in_bar, strength 0..255) of beat ``index``."""
        self.f.seek(self.info.beat_in_bar_at + index)
        bar = self.f.read(1)[0]
        self.f.seek(self.info.strength_at + index)
        return bar, self.f.read(1)[0]


def read_envelope(f, info, frame):
    """(bass, mid, high) 0..255 at envelope frame ``frame`` (clamped to the track)."""
    if info.env_frames == 0:
        return 0, 0, 0
    frame = min(max(frame, 0), info.env_frames - 1)
    out = []
    for band in range(3):
        f.seek(info.env_at[band] + frame)
        out.append(f.read(1)[0])
    return out[0], out[1], out[2]

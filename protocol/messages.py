"""Messages: one tagged schema, shared by agent and firmware.

Every message is a msgpack array ``[tag, field1, field2, ...]``. Fields are
append-only: a newer sender may add fields at the end (an older decoder ignores
them), a newer decoder fills fields an older sender did not send with their
defaults; a field's type never changes and tags are never reused
(docs/protocol.md lists them). Runs on CPython and MicroPython.

Field types: ``u`` unsigned int (< 2**64), ``i`` signed int, ``s`` text, ``b``
bytes, ``li`` list of ints, ``?i`` int or nil.
"""

from . import codec
from .errors import ProtocolError
from .reasons import INCONSISTENT, LIMIT_EXCEEDED, MALFORMED, RATE_OUT_OF_RANGE, UNKNOWN_MESSAGE

# 2: playback rate (play, seek, rate), live beats and envelopes, light offset.
# 3: sealed messages, key rotation, hello.auth / boot / key_ids (docs/protocol.md 11).
# 4: activate.at_us, the hand-over of the lights at an instant (docs/protocol.md 6).
PROTOCOL_VERSION = 4
HANDOVER_PROTOCOL = 4  # the first protocol whose devices know activate.at_us
MAX_MESSAGE_BYTES = 65536
MAX_TEXT_BYTES = 256
MAX_LIST_ITEMS = 1024

NORMAL_RATE_PPM = 1000000  # rate = map microseconds per agent microsecond, in ppm: normal speed
MIN_RATE_PPM = 920000  # 92 %: a DJ's pitch fader at -8 %
MAX_RATE_PPM = 1080000  # 108 %
MAX_LIVE_BEATS = 32  # predictions per live_beats message
MAX_LIVE_ENV_FRAMES = 256  # frames per band per live_env message
MAX_LIGHT_OFFSET_US = 1000000  # |light_offset_us|: a projector's delay is well under a second

HELLO = 1
BUNDLE_OFFER = 2
CHUNK = 3
CHUNK_ACK = 4
CHUNK_NACK = 5
ACTIVATE = 6
ACTIVATED = 7
REJECTED = 8
SYNC_REQ = 9
SYNC_RESP = 10
PLAY = 11
STOP = 12
SEEK = 13
TELEMETRY = 14
STATUS = 15
ERROR = 16
ROLLBACK = 17
RATE = 18
LIVE_BEATS = 19
LIVE_ENV = 20
LIGHT_OFFSET = 21
SEALED = 22
KEY_INSTALL = 23
KEY_RETIRE = 24

# tag -> (name, ((field, type, default), ...)). Append fields; never reorder.
SCHEMA = {  # type: dict
    HELLO: ("hello", (("proto_version", "u", 0), ("fw_version", "u", 0), ("device_id", "s", ""),
                      ("max_frame", "u", 0), ("window", "u", 1), ("active_track", "s", ""),
                      ("active_version", "u", 0), ("light_offset_us", "i", 0),
                      ("auth", "u", 0), ("boot", "u", 0), ("key_ids", "s", ""))),
    BUNDLE_OFFER: ("bundle_offer", (("transfer_id", "u", 0), ("size", "u", 0),
                                    ("sha256", "b", b""), ("chunk_size", "u", 0),
                                    ("track_id", "s", ""), ("bundle_version", "u", 0))),
    CHUNK: ("chunk", (("transfer_id", "u", 0), ("offset", "u", 0), ("data", "b", b""))),
    CHUNK_ACK: ("chunk_ack", (("transfer_id", "u", 0), ("next_offset", "u", 0))),
    CHUNK_NACK: ("chunk_nack", (("transfer_id", "u", 0), ("next_offset", "u", 0),
                                ("reason", "u", 0))),
    ACTIVATE: ("activate", (("transfer_id", "u", 0), ("at_us", "u", 0))),
    ACTIVATED: ("activated", (("track_id", "s", ""), ("bundle_version", "u", 0),
                              ("sha256", "b", b""))),
    REJECTED: ("rejected", (("transfer_id", "u", 0), ("reason", "u", 0), ("detail", "s", ""))),
    SYNC_REQ: ("sync_req", (("seq", "u", 0), ("t1_us", "u", 0))),
    SYNC_RESP: ("sync_resp", (("seq", "u", 0), ("t1_us", "u", 0), ("t2_us", "u", 0),
                              ("t3_us", "u", 0))),
    PLAY: ("play", (("track_id", "s", ""), ("start_us", "u", 0),
                    ("rate_ppm", "u", NORMAL_RATE_PPM))),
    STOP: ("stop", (("at_us", "u", 0),)),
    SEEK: ("seek", (("position_us", "u", 0), ("at_us", "u", 0),
                    ("rate_ppm", "u", NORMAL_RATE_PPM))),
    TELEMETRY: ("telemetry", (("seq", "u", 0), ("device_us", "u", 0), ("drift_us", "li", []),
                              ("cpu_pct", "u", 0), ("temp_dc", "?i", None), ("free_mem", "u", 0),
                              ("error_counts", "li", []), ("boot", "u", 0))),
    STATUS: ("status", (("state", "s", ""), ("fw_version", "u", 0), ("active_track", "s", ""),
                        ("bundle_version", "u", 0), ("uptime_s", "u", 0),
                        ("light_offset_us", "i", 0))),
    ERROR: ("error", (("reason", "u", 0), ("detail", "s", ""), ("ref_tag", "u", 0))),
    ROLLBACK: ("rollback", ()),
    RATE: ("rate", (("rate_ppm", "u", NORMAL_RATE_PPM), ("at_us", "u", 0))),
    LIVE_BEATS: ("live_beats", (("session", "u", 0), ("generation", "u", 0),
                                ("first_index", "u", 0), ("times_us", "li", []),
                                ("beat_in_bar", "li", []), ("strength", "li", []))),
    LIVE_ENV: ("live_env", (("start_us", "u", 0), ("rate_mhz", "u", 0), ("bass", "b", b""),
                            ("mid", "b", b""), ("high", "b", b""))),
    LIGHT_OFFSET: ("light_offset", (("offset_us", "i", 0),)),
    # docs/protocol.md 11: a MAC'd envelope around another message, and key rotation.
    SEALED: ("sealed", (("key_id", "s", ""), ("session", "u", 0), ("counter", "u", 0),
                        ("sent_us", "u", 0), ("body", "b", b""), ("mac", "b", b""))),
    KEY_INSTALL: ("key_install", (("key_id", "s", ""), ("key", "b", b""),
                                  ("bundle_key_id", "s", ""), ("bundle_key", "b", b""))),
    KEY_RETIRE: ("key_retire", (("key_id", "s", ""),)),
}
TAGS = {}
for _tag in SCHEMA:
    TAGS[SCHEMA[_tag][0]] = _tag


class Message:
    """A decoded message: ``kind`` (its name), ``tag`` and the fields as attributes."""

    def __init__(self, kind, fields):
        self.kind = kind
        self.tag = TAGS[kind]
        self.fields = fields

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other):
        return isinstance(other, Message) and self.kind == other.kind and \
            self.fields == other.fields

    def __repr__(self):
        return "Message(%r, %r)" % (self.kind, self.fields)


def _check(kind, name, ftype, value, at):
    """``value`` has type ``ftype``; ``at`` is its place in the message ($[at]), written
    out only in an error."""
    ok = True
    if ftype == "u":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << 64)
    elif ftype == "i":
        ok = isinstance(value, int) and not isinstance(value, bool) and \
            -(1 << 63) <= value < (1 << 63)
    elif ftype == "?i":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif ftype == "s":
        ok = isinstance(value, str)
        if ok and len(value.encode("utf-8")) > MAX_TEXT_BYTES:
            raise ProtocolError(LIMIT_EXCEEDED, "%s.%s: text over %d bytes at $[%d]"
                                % (kind, name, MAX_TEXT_BYTES, at))
    elif ftype == "b":
        ok = isinstance(value, (bytes, bytearray))
    elif ftype == "li":
        ok = isinstance(value, list)
        if ok and len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(LIMIT_EXCEEDED, "%s.%s: more than %d items at $[%d]"
                                % (kind, name, MAX_LIST_ITEMS, at))
        if ok:
            for i in range(len(value)):
                v = value[i]
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ProtocolError(MALFORMED, "%s.%s: expected int, got %s at $[%d][%d]"
                                        % (kind, name, type(v).__name__, at, i))
    if not ok:
        raise ProtocolError(MALFORMED, "%s.%s: expected %s, got %s at $[%d]"
                            % (kind, name, _TYPE_NAMES[ftype], _describe(value), at))


_TYPE_NAMES = {"u": "unsigned int", "i": "int", "?i": "int or nil", "s": "text", "b": "bytes",
               "li": "list of ints"}


def _describe(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return "int %d" % value
    return type(value).__name__


def encode(kind, **fields):
    """Bytes of message ``kind``; missing fields take their defaults, unknown ones fail."""
    tag = TAGS.get(kind)
    if tag is None:
        raise ProtocolError(UNKNOWN_MESSAGE, "unknown message kind %r" % kind)
    spec = SCHEMA[tag][1]
    known = [f[0] for f in spec]
    for name in fields:
        if name not in known:
            raise ProtocolError(MALFORMED, "%s has no field %r (fields: %s)"
                                % (kind, name, ", ".join(known)))
    out = [tag]  # type: list
    for i in range(len(spec)):
        name, ftype, default = spec[i]
        value = fields.get(name, default)
        _check(kind, name, ftype, value, i + 1)
        out.append(value)
    return codec.encode(out)


def decode(data):
    """Message from bytes; ProtocolError with a reason code and the place otherwise."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(LIMIT_EXCEEDED, "message of %d bytes over the limit %d"
                            % (len(data), MAX_MESSAGE_BYTES))
    obj = codec.decode(data, max_len=MAX_MESSAGE_BYTES)
    if not isinstance(obj, list) or not obj:
        raise ProtocolError(MALFORMED, "a message is a non-empty array, got %s at $"
                            % type(obj).__name__)
    tag = obj[0]
    if not isinstance(tag, int) or isinstance(tag, bool):
        raise ProtocolError(MALFORMED, "message tag must be an int, got %s at $[0]"
                            % type(tag).__name__)
    entry = SCHEMA.get(tag)
    if entry is None:
        raise ProtocolError(UNKNOWN_MESSAGE, "unknown message tag %d at $[0]" % tag)
    kind, spec = entry
    fields = {}
    for i in range(len(spec)):
        name, ftype, default = spec[i]
        if i + 1 < len(obj):
            value = obj[i + 1]
            _check(kind, name, ftype, value, i + 1)
            if ftype == "b":
                value = bytes(value)
        else:
            value = default
        fields[name] = value
    return Message(kind, fields)


# --- meaning checks shared by the agent (before sending) and the device (on receipt) ----

def check_rate(rate_ppm):
    """ProtocolError(RATE_OUT_OF_RANGE) unless 92 % <= rate <= 108 %."""
    if not MIN_RATE_PPM <= rate_ppm <= MAX_RATE_PPM:
        raise ProtocolError(RATE_OUT_OF_RANGE, "rate %d ppm is outside %d..%d ppm (92-108 %%)"
                            % (rate_ppm, MIN_RATE_PPM, MAX_RATE_PPM))


def check_live_beats(msg):
    """A live_beats message that contradicts itself or is too long raises ProtocolError."""
    times = msg.times_us
    n = len(times)
    if n > MAX_LIVE_BEATS:
        raise ProtocolError(LIMIT_EXCEEDED, "live_beats: %d beats, at most %d"
                            % (n, MAX_LIVE_BEATS))
    if len(msg.beat_in_bar) != n or len(msg.strength) != n:
        raise ProtocolError(INCONSISTENT, "live_beats: %d times, %d beat_in_bar, %d strength"
                            % (n, len(msg.beat_in_bar), len(msg.strength)))
    for i in range(n):
        if times[i] < 0 or (i and times[i] <= times[i - 1]):
            raise ProtocolError(INCONSISTENT, "live_beats: times_us not increasing at $[4][%d]"
                                % i)
        if not 0 <= msg.beat_in_bar[i] <= 16 or not 0 <= msg.strength[i] <= 255:
            raise ProtocolError(INCONSISTENT, "live_beats: beat_in_bar must be 0..16 and "
                                              "strength 0..255, at beat %d" % i)


def check_live_env(msg):
    """A live_env message with bands of different lengths, too many frames or no rate."""
    n = len(msg.bass)
    if n > MAX_LIVE_ENV_FRAMES:
        raise ProtocolError(LIMIT_EXCEEDED, "live_env: %d frames, at most %d"
                            % (n, MAX_LIVE_ENV_FRAMES))
    if len(msg.mid) != n or len(msg.high) != n:
        raise ProtocolError(INCONSISTENT, "live_env: bands of %d, %d and %d frames"
                            % (n, len(msg.mid), len(msg.high)))
    if not 1 <= msg.rate_mhz <= 200000:
        raise ProtocolError(INCONSISTENT, "live_env: rate_mhz %d outside 1..200000"
                            % msg.rate_mhz)


def check_light_offset(offset_us):
    if not -MAX_LIGHT_OFFSET_US <= offset_us <= MAX_LIGHT_OFFSET_US:
        raise ProtocolError(LIMIT_EXCEEDED, "light offset %d us is over +-%d us"
                            % (offset_us, MAX_LIGHT_OFFSET_US))

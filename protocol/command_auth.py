"""Authenticated commands (docs/protocol.md 11): per-device keys, the MAC of a sealed
message, the device's freshness checks and the key wrap used by rotation.

A ``sealed`` message carries another message's exact bytes (``body``) with a
16-byte MAC over

    "gridcast sealed v1\\0" | key_id (8 ASCII) | session u32 BE | counter u64 BE
    | sent_us u64 BE | body

under the device's command key (HMAC-SHA256, truncated). ``session`` is the
device's boot id from its hello (a capture from an earlier boot is void),
``counter`` rises with every command (replays and reordering show), ``sent_us``
is the agent-timeline instant of sealing (held-back messages show). Runs on
CPython and MicroPython.
"""

import struct

try:
    import hmac as _hmac  # type: ignore[import-not-found, unused-ignore]  # CPython only
except ImportError:  # MicroPython has no hmac module
    _hmac = None  # type: ignore[assignment, unused-ignore]  # MicroPython has none

from .errors import ProtocolError
from .hmac_sha256 import HmacSha256, equal, pads
from .key_id import key_id
from .reasons import (
    BAD_SIGNATURE,
    INCONSISTENT,
    REORDERED,
    REPLAYED,
    STALE,
    UNKNOWN_KEY,
    WRONG_SESSION,
)

DEVICE_KEY_LABEL = b"gridcast device key v1\x00"
MAC_LABEL = b"gridcast sealed v1\x00"
WRAP_LABEL = b"gridcast key wrap v1\x00"
MAC_BYTES = 16  # 2**-128 per forgery attempt: see docs/protocol.md 11 for the budget
KEY_BYTES = 32
KEY_ID_BYTES = 8
WINDOW_US = 5000000  # |sent_us - the device's estimate of agent time|, once it is synced
RECENT_COUNTERS = 16  # counters remembered to tell a replay from a reordering
MAX_CACHED_KEYS = 4  # padded HMAC keys kept (a device holds at most 2 command keys)
_PADS = {}  # type: dict

# What a device announces in hello.auth.
AUTH_NONE = 0  # no command key: nothing is checked (old firmware, unconfigured device)
AUTH_OPTIONAL = 1  # key derived from the bundle key (dev setups): sealed ones are checked
AUTH_REQUIRED = 2  # provisioned command key: every command below must come sealed

# Tags that change state or time on a device; they travel sealed. Chunks do not: a
# forged chunk can only spoil a transfer (the sealed offer names the file's SHA-256,
# and the bundle has its own HMAC), never change what plays.
AUTHENTICATED_TAGS = (2, 6, 10, 11, 12, 13, 17, 18, 19, 20, 21, 23, 24)
SYNC_RESP_TAG = 10


def device_key(site_key, device_id):
    """The command key of one device: HMAC-SHA256(site key, label | device id)."""
    h = HmacSha256(site_key)
    h.update(DEVICE_KEY_LABEL)
    h.update(device_id.encode())
    return h.digest()


def mac(key, kid, session, counter, sent_us, body):
    """The 16-byte MAC of a sealed message (the layout in the module docstring)."""
    if len(kid) != KEY_ID_BYTES:
        raise ProtocolError(UNKNOWN_KEY, "key id %r is not %d characters" % (kid, KEY_ID_BYTES))
    if _hmac is not None:
        h = _hmac.new(key, digestmod="sha256")
    else:
        key_pads = _PADS.get(key)
        if key_pads is None:
            if len(_PADS) >= MAX_CACHED_KEYS:
                _PADS.clear()
            key_pads = _PADS[key] = pads(key)
        h = HmacSha256(key, key_pads)
    h.update(MAC_LABEL)
    h.update(kid.encode())
    h.update(struct.pack(">IQQ", session, counter, sent_us))
    h.update(body)
    return h.digest()[:MAC_BYTES]


def seal(key, kid, session, counter, sent_us, body):
    """Bytes of the ``sealed`` message around ``body`` (another message's bytes)."""
    from . import codec
    from .messages import SEALED

    # The fields in schema order (messages.SCHEMA[SEALED]); codec.encode writes the same
    # bytes as messages.encode without its per-field checks, which mac() makes in effect.
    return codec.encode([SEALED, kid, session, counter, sent_us, bytes(body),
                         mac(key, kid, session, counter, sent_us, body)])


def _pad(key, which, kid):
    h = HmacSha256(key)
    h.update(WRAP_LABEL)
    h.update(which)
    h.update(kid.encode())
    return h.digest()


def wrap(current_key, which, new_key, new_kid):
    """``new_key`` XOR a pad only the holder of ``current_key`` can compute; ``which`` is
    b"c" (command key) or b"b" (bundle key). A pad is used for one key id only, so one key
    wrapped twice gives the same bytes and two keys never share a pad."""
    pad = _pad(current_key, which, new_kid)
    return bytes([new_key[i] ^ pad[i] for i in range(KEY_BYTES)])


def unwrap(current_key, which, wrapped, new_kid):
    """The key inside ``wrapped``; ProtocolError(INCONSISTENT) unless its id is ``new_kid``."""
    if len(wrapped) != KEY_BYTES:
        raise ProtocolError(INCONSISTENT, "a wrapped key is %d bytes, not %d"
                            % (len(wrapped), KEY_BYTES))
    key = wrap(current_key, which, wrapped, new_kid)
    if key_id(key) != new_kid:
        raise ProtocolError(INCONSISTENT, "the unwrapped key is not key %s" % new_kid)
    return key


class Guard:
    """The device's checks on sealed messages: MAC, session, counter, time window.

    ``keys`` maps key id -> command key and is shared with whoever rotates keys.
    """

    def __init__(self, keys, session):
        self.keys = keys
        self.session = session
        self.last_counter = 0
        self.recent = []

    def verify(self, msg):
        """The command key of an authentic ``sealed`` message of this session (MAC first:
        nothing unauthenticated gets a more precise answer than bad_signature)."""
        key = self.keys.get(msg.key_id)
        if key is None:
            raise ProtocolError(UNKNOWN_KEY, "sealed with key %r; this device holds %s"
                                % (msg.key_id, ",".join(sorted(self.keys)) or "none"))
        want = mac(key, msg.key_id, msg.session & 0xFFFFFFFF, msg.counter, msg.sent_us,
                   msg.body)
        if not equal(want, msg.mac):
            raise ProtocolError(BAD_SIGNATURE, "sealed message: MAC mismatch under key %s"
                                % msg.key_id)
        if msg.session != self.session:
            raise ProtocolError(WRONG_SESSION, "sealed for boot %d; this is boot %d (sent "
                                "before the device restarted)" % (msg.session, self.session))
        return key

    def check_fresh(self, counter, sent_us, agent_now_us):
        """Accept ``counter`` once, in rising order, sealed within WINDOW_US of the device's
        estimate of agent time (None: no estimate yet, the window cannot be checked)."""
        if counter in self.recent:
            raise ProtocolError(REPLAYED, "counter %d was already accepted" % counter)
        if counter <= self.last_counter:
            raise ProtocolError(REORDERED, "counter %d is older than %d, already accepted"
                                % (counter, self.last_counter))
        if agent_now_us is not None and abs(sent_us - agent_now_us) > WINDOW_US:
            raise ProtocolError(STALE, "sealed at agent time %d, the device reckons it is %d "
                                "(%+d ms, window +-%d ms): held back, or the clock is off"
                                % (sent_us, agent_now_us, (sent_us - agent_now_us) // 1000,
                                   WINDOW_US // 1000))
        self.last_counter = counter
        self.recent.append(counter)
        if len(self.recent) > RECENT_COUNTERS:
            self.recent.pop(0)

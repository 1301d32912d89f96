"""Reason codes: why a device or the agent rejected something.

Codes are part of the wire contract (docs/protocol.md): never renumber one, only
append. Runs on CPython and MicroPython.
"""

OK = 0
BAD_FRAME = 1  # CRC mismatch or broken framing
TOO_LARGE = 2  # a frame, message or bundle over its size limit
MALFORMED = 3  # bytes that do not decode as the schema says
UNKNOWN_MESSAGE = 4  # message tag this side does not know
BAD_OFFSET = 5  # chunk not at the expected offset (gap or beyond the end)
DIGEST_MISMATCH = 6  # SHA-256 of the received bytes differs (corruption)
BAD_SIGNATURE = 7  # HMAC does not match: not made with the provisioned key
UNKNOWN_KEY = 8  # bundle signed with a key id this device does not hold
SCHEMA_UNSUPPORTED = 9  # bundle schema version newer than this firmware reads
FIRMWARE_TOO_OLD = 10  # bundle needs a newer firmware
LIMIT_EXCEEDED = 11  # a count or length over the hard limits
TRUNCATED = 12  # bytes end before the structure does
STORAGE_ERROR = 13  # the device could not write or rename a file
NO_TRANSFER = 14  # chunk or activate for a transfer that is not open
REPLAYED = 15  # an older version of the active track, or a stale transfer
BUSY = 16  # another transfer is in progress
INCONSISTENT = 17  # fields that contradict each other (counts, lengths, order)
NOT_FOUND = 18  # no such track / no previous bundle to roll back to
BAD_CONFIG = 19  # device configuration unreadable or invalid
INTERNAL = 20  # unexpected failure on the device (details in the message)
RATE_OUT_OF_RANGE = 21  # a playback rate outside 92..108 %: refused, playback goes on unchanged
UNAUTHENTICATED = 22  # a command that must come sealed (docs/protocol.md 11) came without a MAC
REORDERED = 23  # a sealed command older (by counter) than one already accepted
STALE = 24  # sealed outside the agent-time window, or a sync answer to no open request
WRONG_SESSION = 25  # sealed for another boot of the device (a capture from before a restart)

NAMES = {
    OK: "ok", BAD_FRAME: "bad_frame", TOO_LARGE: "too_large", MALFORMED: "malformed",
    UNKNOWN_MESSAGE: "unknown_message", BAD_OFFSET: "bad_offset",
    DIGEST_MISMATCH: "digest_mismatch", BAD_SIGNATURE: "bad_signature",
    UNKNOWN_KEY: "unknown_key", SCHEMA_UNSUPPORTED: "schema_unsupported",
    FIRMWARE_TOO_OLD: "firmware_too_old", LIMIT_EXCEEDED: "limit_exceeded",
    TRUNCATED: "truncated", STORAGE_ERROR: "storage_error", NO_TRANSFER: "no_transfer",
    REPLAYED: "replayed", BUSY: "busy", INCONSISTENT: "inconsistent", NOT_FOUND: "not_found",
    BAD_CONFIG: "bad_config", INTERNAL: "internal", RATE_OUT_OF_RANGE: "rate_out_of_range",
    UNAUTHENTICATED: "unauthenticated", REORDERED: "reordered", STALE: "stale",
    WRONG_SESSION: "wrong_session",
}


def name(code):
    return NAMES.get(code, "reason_%d" % code)

"""Bundle v1 layout, limits and version numbers, shared by builder and reader.

    bundle    = [signed, auth]
    signed    = [header, beats, envelopes, structure]  (parts: append-only)
    header    = [MAGIC, schema_version, bundle_version, min_firmware, track_id,
                 audio_sha256, created_s, key_id, duration_us, tempo_mbpm, meter]
    beats     = [count, deltas, beat_in_bar, strength]
                deltas: count x u32 LE microseconds (first from t = 0)
                beat_in_bar, strength: count x u8 (strength 0..255)
    envelopes = [rate_mhz, frames, bass, mid, high]   each frames x u8
    structure = [sections, starts, ends, roles, energy, phrases, phrase_starts]
                (optional: absent when the map has no sections and no phrases)
                starts, ends: sections x u32 LE microseconds; roles, energy: x u8
                phrase_starts: phrases x u32 LE microseconds
    auth      = [sha256(signed bytes), hmac_sha256(key, signed bytes)]

All of it is msgpack arrays, integers, text and bin: no maps and no floats, so
the same map always gives the same bytes on every platform. Runs on CPython and
MicroPython. docs/protocol.md is the normative description.
"""

from . import version as _version

MAGIC = "gridcast.bundle"
SCHEMA_VERSION = 1

# Hard limits, checked before anything is allocated.
MAX_BUNDLE_BYTES = 1048576  # 1 MiB: a 1-hour track with 50 Hz envelopes is ~700 KB
MAX_BEATS = 20000  # an hour at 333 BPM
MAX_DURATION_US = 3600 * 1000000
MAX_BEAT_DELTA_US = 10 * 1000000  # no two beats further apart than 10 s (6 BPM)
MAX_ENV_RATE_MHZ = 200000  # 200 Hz
MAX_ENV_FRAMES = 400000
MAX_TRACK_ID_BYTES = 64
MAX_KEY_ID_BYTES = 32
MAX_METER = 16
DIGEST_BYTES = 32
MAX_SECTIONS = 256
MAX_PHRASES = 4096  # a phrase every bar for an hour at 270 BPM

# Section roles on the wire: the code is the index. A code a reader does not know
# (appended later) means "other".
ROLES = ("other", "intro", "verse", "buildup", "drop", "chorus", "break", "bridge", "outro")
ROLE_OTHER = 0
ROLE_BUILDUP = 3
ROLE_DROP = 4
ROLE_CHORUS = 5
ROLE_BREAK = 6

HEADER_FIELDS = ("magic", "schema_version", "bundle_version", "min_firmware", "track_id",
                 "audio_sha256", "created_s", "key_id", "duration_us", "tempo_mbpm", "meter")


# Firmware versions in bundle headers take the release form of version.py.
version_to_int = _version.version_to_int
int_to_version = _version.version_text

"""Sections and phrases of a verified bundle, read from its file a few bytes at a time.

``bundle_reader`` finds where the structure part's arrays sit (``BundleInfo.
section_count``, ``section_at``, ``phrase_count``, ``phrases_at``) and calls
``check_structure`` before a bundle is accepted; the player walks the sections
with ``SectionCursor``. Runs on CPython and MicroPython.
"""

from .errors import ProtocolError
from .reasons import INCONSISTENT, TRUNCATED


def _u32(f, at):
    f.seek(at)
    b = f.read(4)
    if b is None or len(b) != 4:
        raise ProtocolError(TRUNCATED, "bundle file shrank while reading")
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def read_section(f, info, index):
    """(start_us, end_us, role code, energy 0..255) of section ``index``."""
    at = info.section_at
    start = _u32(f, at[0] + 4 * index)
    end = _u32(f, at[1] + 4 * index)
    f.seek(at[2] + index)
    role = f.read(1)[0]
    f.seek(at[3] + index)
    return start, end, role, f.read(1)[0]


def read_phrase_us(f, info, index):
    """Start of phrase ``index`` in microseconds."""
    return _u32(f, info.phrases_at + 4 * index)


def check_structure(f, info):
    """Sections ordered, not overlapping, inside the track; phrase starts ascending."""
    duration = info.header["duration_us"]
    prev_end = 0
    for i in range(info.section_count):
        start, end, _, _ = read_section(f, info, i)
        if start < prev_end or end <= start or end > duration:
            raise ProtocolError(INCONSISTENT, "section %d (%d..%d us) overlaps, is empty or "
                                "ends after the track" % (i, start, end))
        prev_end = end
    prev = -1
    for i in range(info.phrase_count):
        t = read_phrase_us(f, info, i)
        if t <= prev or t > duration:
            raise ProtocolError(INCONSISTENT, "phrase %d at %d us is out of order or after "
                                "the end" % (i, t))
        prev = t


class SectionCursor:
    """The section at a map time, for times that mostly move forward (a beat at a time).

    ``at(time_us)`` returns (number, role code, energy 0..255) of the section holding
    that time, or None between sections and when the bundle has none. Moving on costs
    one comparison per call; a file read only when a boundary is crossed (a seek back
    starts over from the first section).
    """

    def __init__(self, f, info):
        self.f = f
        self.info = info
        self.index = -1
        self.start_us = 0
        self.end_us = 0
        self.role = 0
        self.energy = 0
        self.next_start_us = 0
        self._load(0)

    def _load(self, index):
        info = self.info
        self.index = index
        if index >= info.section_count:
            self.start_us = self.end_us = self.next_start_us = 1 << 62
            return
        self.start_us, self.end_us, self.role, self.energy = read_section(self.f, info, index)
        self.next_start_us = (read_section(self.f, info, index + 1)[0]
                              if index + 1 < info.section_count else 1 << 62)

    def at(self, time_us):
        if time_us < self.start_us and self.index > 0:
            self._load(0)
        while time_us >= self.next_start_us:
            self._load(self.index + 1)
        if self.start_us <= time_us < self.end_us:
            return self.index, self.role, self.energy
        return None

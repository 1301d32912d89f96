"""Where the beat map is at each agent instant: anchors with a playback rate.

An anchor (at_us, pos_us, rate_ppm) says: at agent time at_us the map is at
position pos_us and runs at rate_ppm (1000000 = normal speed). Map time p then
plays at agent time

    at_us + (p - pos_us) * 1000000 // rate_ppm

``play`` and ``seek`` replace the whole timeline with one anchor; a ``rate``
message appends one at its instant, where the position is continuous, so the
list is a piecewise-linear map with anchors in increasing time (and position).
Everything is integer microseconds: an ESP32's floats are single precision and
would lose microseconds within minutes; floor division keeps the rounding error
under 1 us at any point of an hour. Runs on MicroPython and CPython.
"""

from gridcast.protocol.messages import MAX_RATE_PPM, MIN_RATE_PPM, NORMAL_RATE_PPM
from gridcast.protocol.reasons import BUSY, OK, RATE_OUT_OF_RANGE

PPM = 1000000
MAX_PENDING = 4  # rate changes scheduled ahead of now


class Timeline:
    def __init__(self):
        self.anchors = [(0, 0, NORMAL_RATE_PPM)]  # (at_us, pos_us, rate_ppm), at increasing

    def reset(self, at_us, pos_us, rate_ppm):
        """One anchor: what play and seek set (the caller has checked the rate)."""
        self.anchors = [(at_us, pos_us, rate_ppm)]

    def change_rate(self, rate_ppm, at_us, now_us):
        """From agent time ``at_us`` on, run at ``rate_ppm`` with no jump in position.
        Changes scheduled at or after ``at_us`` are dropped (this one supersedes them).
        Returns a reason code; on refusal nothing changes."""
        if not MIN_RATE_PPM <= rate_ppm <= MAX_RATE_PPM:
            return RATE_OUT_OF_RANGE
        self.prune(now_us)
        keep = [a for a in self.anchors if a[0] < at_us]
        pending = 0
        for a in keep:
            if a[0] > now_us:
                pending += 1
        if pending >= MAX_PENDING:
            return BUSY
        pos = self.position(at_us)
        keep.append((at_us, pos, rate_ppm))
        self.anchors = keep
        return OK

    def prune(self, now_us):
        """Forget anchors that a later one has replaced by ``now_us``."""
        anchors = self.anchors
        while len(anchors) > 1 and anchors[1][0] <= now_us:
            anchors.pop(0)

    def agent_time(self, pos_us):
        """Agent time at which map position ``pos_us`` plays."""
        anchors = self.anchors
        a = anchors[0]
        for i in range(1, len(anchors)):
            if anchors[i][1] <= pos_us:
                a = anchors[i]
            else:
                break
        return a[0] + (pos_us - a[1]) * PPM // a[2]

    def position(self, agent_us):
        """Map position at agent time ``agent_us``."""
        anchors = self.anchors
        a = anchors[0]
        for i in range(1, len(anchors)):
            if anchors[i][0] <= agent_us:
                a = anchors[i]
            else:
                break
        return a[1] + (agent_us - a[0]) * a[2] // PPM

    def rate_at(self, agent_us):
        """Rate in force at ``agent_us`` (ppm)."""
        rate = self.anchors[0][2]
        for a in self.anchors:
            if a[0] <= agent_us:
                rate = a[2]
        return rate

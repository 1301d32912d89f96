"""Estimating the agent's clock from NTP-style exchanges: offset and skew.

Each exchange gives t1 (device send), t2 (agent receive), t3 (agent send) and
t4 (device receive). With theta(t) = agent - device clock at device time t:

    up   = t2 - t1 = theta + d_up     (so theta lies below every up point)
    down = t3 - t4 = theta - d_down   (so theta lies above every down point)

Network delay only ever adds, so the smallest ``up`` and the largest ``down``
pin theta from both sides; their midpoint errs by half the difference of the
two *minimum* one-way delays, however large the jitter. (Waiting instead for an
exchange with a small round trip needs both directions lucky at once, which
with 20 +- 10 ms of jitter takes minutes.)

The clock also drifts (crystal skew, up to a few hundred ppm), so:
- exchanges are kept as per-second extremes (BIN_US bins: least ``up``, most
  ``down``), up to MAX_BINS of them (2 minutes in a few KB);
- the skew is the slope of a least-squares line through the bins, refitted on
  the half of the bins closest to the delay floor (those carry the clock, the
  others mostly carry jitter), averaged over both directions;
- theta now is the de-skewed extreme over the last RECENT_US;
- theta at a past instant with HINDSIGHT_US of exchanges after it uses the bins on
  both sides (interpolation instead of extrapolation: a skew error then cancels).
  Telemetry reports drift this way, after the fact, so it is as honest as it can be.

Everything is integer microseconds relative to a base (ESP32 floats are single
precision); only small differences meet the float skew. Runs on MicroPython
and CPython.
"""

from gridcast.protocol.reasons import REPLAYED, STALE

BIN_US = 1000000
MAX_BINS = 120
RECENT_US = 30000000
HINDSIGHT_US = 30000000  # a past instant with this much data after it is estimated two-sided
SHORT_RECENT_US = 4000000  # before the skew is known, stay close to now
MIN_SKEW_SPAN_US = 10000000
MAX_SKEW = 0.0005  # 500 ppm: anything larger is a fault, not a crystal
MAX_RTT_US = 2000000


def _line(ts, vs, idx):
    """Least-squares slope and mean point of vs over ts at the given indices."""
    n = len(idx)
    mt = 0.0
    mv = 0.0
    for i in idx:
        mt += ts[i]
        mv += vs[i]
    mt /= n
    mv /= n
    num = 0.0
    den = 0.0
    for i in idx:
        dt = ts[i] - mt
        num += dt * (vs[i] - mv)
        den += dt * dt
    return (num / den if den > 0 else 0.0), mt, mv


def _floor_slope(ts, vs, sign):
    """Slope of the delay floor: fit all bins, then refit the half nearest the floor."""
    idx = list(range(len(ts)))
    slope, mt, mv = _line(ts, vs, idx)
    res = [sign * (vs[i] - (mv + slope * (ts[i] - mt))) for i in idx]
    order = sorted(idx, key=lambda i: res[i])
    keep = order[:max(3, len(order) // 2)]
    slope, _, _ = _line(ts, vs, keep)
    return slope


class SyncEstimator:
    def __init__(self, defer_refit=False):
        # defer_refit: closing a bin only queues the skew refit (refit_due); the owner
        # calls refit() when the work cannot delay a beat. The device does this, since
        # the refit takes about 0.4 ms on a PC and tens of ms on a board.
        self.defer_refit = defer_refit
        self.refit_due = False
        self.base_t = None
        self.base_v = 0
        # Closed bins: time and value of the extreme exchange, per direction.
        self.t_up = []
        self.v_up = []
        self.t_dn = []
        self.v_dn = []
        self._bin = None  # index of the open bin (None: no bin open yet)
        self._open = [0, 0, 0, 0]  # t_up, v_up, t_dn, v_dn of the open bin
        self.skew = 0.0
        self._theta = None  # (t_ref, theta_ref) relative to the bases
        self._dirty = False
        self.samples = 0
        self.rejected = 0
        self.last_rtt_us = 0

    @property
    def synced(self):
        return self.samples >= 4

    def add(self, t1, t2, t3, t4):
        """Add one exchange (t1, t4 device microseconds; t2, t3 agent microseconds)."""
        rtt = (t4 - t1) - (t3 - t2)
        if rtt < 0 or rtt > MAX_RTT_US:
            self.rejected += 1
            return False
        if self.base_t is None:
            self.base_t = t1
            self.base_v = t2 - t1
        self.samples += 1
        self.last_rtt_us = rtt
        tu, vu = t1 - self.base_t, (t2 - t1) - self.base_v
        td, vd = t4 - self.base_t, (t3 - t4) - self.base_v
        b = tu // BIN_US
        if self._bin != b:
            self._close()
            self._bin = b
            self._open = [tu, vu, td, vd]
        else:
            o = self._open
            s = self.skew
            if vu - s * (tu - o[0]) < o[1]:
                o[0], o[1] = tu, vu
            if vd - s * (td - o[2]) > o[3]:
                o[2], o[3] = td, vd
        self._dirty = True
        return True

    def _close(self):
        if self._bin is None:
            return
        o = self._open
        self.t_up.append(o[0])
        self.v_up.append(o[1])
        self.t_dn.append(o[2])
        self.v_dn.append(o[3])
        if len(self.t_up) > MAX_BINS:
            for lst in (self.t_up, self.v_up, self.t_dn, self.v_dn):
                lst.pop(0)
        if self.defer_refit:
            self.refit_due = True
        else:
            self.refit()

    def refit(self):
        """Fit the skew to the closed bins' delay floors (the costly part of sync)."""
        self.refit_due = False
        self._dirty = True
        if len(self.t_up) >= 4 and self.t_up[-1] - self.t_up[0] >= MIN_SKEW_SPAN_US:
            s_up = _floor_slope(self.t_up, self.v_up, 1)
            s_dn = _floor_slope(self.t_dn, self.v_dn, -1)
            s = (s_up + s_dn) / 2
            self.skew = MAX_SKEW if s > MAX_SKEW else (-MAX_SKEW if s < -MAX_SKEW else s)

    def _fit(self):
        self._dirty = False
        t_ref = self._open[0]
        recent = RECENT_US if self.skew != 0.0 else SHORT_RECENT_US
        s = self.skew
        hi = self._open[1] - s * (self._open[0] - t_ref)
        lo = self._open[3] - s * (self._open[2] - t_ref)
        for i in range(len(self.t_up) - 1, -1, -1):
            if t_ref - self.t_up[i] > recent:
                break
            u = self.v_up[i] - s * (self.t_up[i] - t_ref)
            d = self.v_dn[i] - s * (self.t_dn[i] - t_ref)
            if u < hi:
                hi = u
            if d > lo:
                lo = d
        self._theta = (t_ref, (hi + lo) / 2)

    def offset_us(self, t_local):
        """theta (agent - device) at device time t_local, in microseconds (float)."""
        if self.base_t is None:
            return 0.0
        if self._dirty or self._theta is None:
            self._fit()
        t_rel = t_local - self.base_t
        if self.skew != 0.0 and self.t_up and self.t_up[-1] - t_rel >= HINDSIGHT_US:
            two_sided = self._around(t_rel)
            if two_sided is not None:
                return self.base_v + two_sided
        t_ref, theta = self._theta  # type: ignore[misc]  # set by _fit
        return self.base_v + theta + self.skew * (t_rel - t_ref)

    def _around(self, t_rel):
        """Theta at a past instant from the bins within HINDSIGHT_US on either side."""
        s = self.skew
        hi = None
        lo = None
        for i in range(len(self.t_up)):
            if abs(self.t_up[i] - t_rel) > HINDSIGHT_US:
                continue
            u = self.v_up[i] - s * (self.t_up[i] - t_rel)
            d = self.v_dn[i] - s * (self.t_dn[i] - t_rel)
            if hi is None or u < hi:
                hi = u
            if lo is None or d > lo:
                lo = d
        return None if hi is None else (hi + lo) / 2

    def to_agent(self, t_local):
        return t_local + int(self.offset_us(t_local))

    def to_local(self, t_agent, t_hint):
        """Device time at which the agent clock reads t_agent (t_hint: a nearby device time)."""
        return t_agent - int(self.offset_us(t_hint))


MAX_OPEN_REQUESTS = 32  # sync_req awaiting an answer: 4 s at 8 Hz, past MAX_RTT_US
ANSWERED_KEPT = 16


class OpenRequests:
    """The device's own sync requests still awaiting an answer. An answer counts only
    for a request that is open (its seq and echoed t1 match), and only once: a replayed
    or invented sync_resp is refused whether or not it is sealed, since its freshness is
    the device's own (seq, t1), not a counter."""

    def __init__(self):
        self.seqs = []
        self.t1s = []
        self.answered = []

    def add(self, seq, t1_us):
        self.seqs.append(seq)
        self.t1s.append(t1_us)
        if len(self.seqs) > MAX_OPEN_REQUESTS:
            self.seqs.pop(0)
            self.t1s.pop(0)

    def take(self, seq, t1_us, t4_us):
        """0 when (seq, t1) answers an open request (now closed), else the reason code:
        replayed (answered already) or stale (no such request open, or the answer came
        MAX_RTT_US or more after it: held back on the way)."""
        for i in range(len(self.seqs)):
            if self.seqs[i] == seq and self.t1s[i] == t1_us:
                self.seqs.pop(i)
                self.t1s.pop(i)
                if t4_us - t1_us > MAX_RTT_US:
                    return STALE
                self.answered.append(seq)
                if len(self.answered) > ANSWERED_KEPT:
                    self.answered.pop(0)
                return 0
        return REPLAYED if seq in self.answered else STALE

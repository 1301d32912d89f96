"""Telemetry: what the device measures of itself, batched with sequence numbers.

Every fired beat is kept as (device time it fired, agent time it was meant for).
A batch turns the beats fired at least REPORT_AFTER_US ago into drift samples,
using the clock estimate *around* the moment they fired (exchanges before and
after it): a beat scheduled on an estimate that has since improved shows its
true error, not the error the device believed at the time. Until the skew is
known there is no hindsight to wait for, and beats are reported at once.
Batches are numbered; the MQTT client keeps unacknowledged ones and resends
them after a reconnect, so a gap in sequence numbers at the collector is real
loss.
"""

from gridcast.protocol import messages

MAX_FIRES = 256
REPORT_AFTER_US = 31000000  # drift is reported once the clock estimate has hindsight


def boot_id():
    """A random number per boot: seq restarts at 0, so (boot, seq) names a batch."""
    try:
        import os

        return int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF
    except (ImportError, AttributeError):
        import random

        return random.getrandbits(30)


class Telemetry:
    def __init__(self, boot=None):
        self.boot = boot_id() if boot is None else boot
        self.seq = 0
        self.fires = []  # (local_us, target_agent_us)
        self.errors = {}
        self.dropped_fires = 0

    def record_fire(self, local_us, target_agent_us):
        if len(self.fires) >= MAX_FIRES:
            self.fires.pop(0)
            self.dropped_fires += 1
        self.fires.append((local_us, target_agent_us))

    def count_error(self, code, n=1):
        self.errors[code] = self.errors.get(code, 0) + n

    def batch(self, sync, now_local, cpu_pct, temp_c, free_mem, flush=False):
        drift = []
        keep = []
        for local, target in self.fires:
            if flush or now_local - local >= REPORT_AFTER_US or not sync.skew:
                drift.append(sync.to_agent(local) - target)
            else:
                keep.append((local, target))
        self.fires = keep
        counts = []
        for code in sorted(self.errors):
            counts.append(code)
            counts.append(self.errors[code])
        seq = self.seq
        self.seq += 1
        return messages.encode(
            "telemetry", seq=seq, device_us=now_local, drift_us=drift, cpu_pct=cpu_pct,
            temp_dc=None if temp_c is None else int(temp_c * 10), free_mem=free_mem,
            error_counts=counts, boot=self.boot)

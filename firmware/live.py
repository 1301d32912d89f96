"""Live beats: the coming beats the agent predicts, and the band envelopes that go with them.

For music without a beat map the agent sends the next beats ahead (``live_beats``,
docs/protocol.md section 10). Each list replaces the predictions not yet fired
when its generation is newer; beats carry a running number, and a number that
already fired is never fired again, so a correction that lands in the last
milliseconds before a beat cannot double it. The player takes beats from here
exactly as it takes them from a bundle. Runs on MicroPython and CPython.
"""

from gridcast.protocol import messages
from gridcast.protocol.reasons import OK, REPLAYED

_SILENT = (0, 0, 0)


class LiveBeats:
    """The predictions not yet fired. The message's own lists are kept (no copy, no tuple
    per beat): beat ``k`` of them is number ``first + k``; ``next`` is the one to fire."""

    def __init__(self):
        self.session = -1
        self.generation = -1
        self.last_fired = -1  # number of the last beat fired or skipped (this session)
        self.first = 0
        self.times = []  # agent us, increasing
        self.bars = []
        self.strengths = []
        self.next = 0  # index into the lists of the next beat to fire

    def replace(self, msg):
        """Take a live_beats message; ProtocolError if it contradicts itself, REPLAYED if
        stale (nothing changes then), OK otherwise."""
        messages.check_live_beats(msg)
        if msg.session != self.session:
            self.session = msg.session
            self.generation = -1
            self.last_fired = -1
        elif msg.generation <= self.generation:
            return REPLAYED
        self.generation = msg.generation
        self.first = msg.first_index
        self.times = msg.times_us
        self.bars = msg.beat_in_bar
        self.strengths = msg.strength
        # Beats of this list that already fired (a correction of a beat just shown).
        self.next = max(0, min(len(self.times), self.last_fired + 1 - self.first))
        return OK

    @property
    def pending(self):
        return len(self.times) - self.next

    def peek_number(self):
        """Number of the next beat to fire, or -1 when the predictions ran out."""
        return self.first + self.next if self.next < len(self.times) else -1

    def done(self):
        """The next beat was fired (or skipped as too late)."""
        self.last_fired = self.first + self.next
        self.next += 1

    def cancel(self):
        self.times = []
        self.next = 0


class LiveEnvelope:
    """The latest block of band envelopes (bass, mid, high, 0..255) on the agent's timeline."""

    def __init__(self):
        self.start_us = 0
        self.rate_mhz = 0
        self.bands = None

    def replace(self, msg):
        messages.check_live_env(msg)
        self.start_us = msg.start_us
        self.rate_mhz = msg.rate_mhz
        self.bands = (msg.bass, msg.mid, msg.high)
        return OK

    def at(self, agent_us):
        """(bass, mid, high) at an agent instant; silence outside the block."""
        bands = self.bands
        if bands is None:
            return _SILENT
        frame = (agent_us - self.start_us) * self.rate_mhz // 1000000000
        if frame < 0 or frame >= len(bands[0]):
            return _SILENT
        return bands[0][frame], bands[1][frame], bands[2][frame]

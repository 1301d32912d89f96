"""The LED renderer: a few beat- and envelope-driven effects into one preallocated buffer.

Effects (chosen by ``effect``):
    "pulse"  every beat flashes, the downbeat in warm white, others tinted by the
             bass/mid/high envelopes; the light decays until the next beat
    "bands"  colour follows the envelopes continuously (red bass, green mid,
             blue high), beats add a brightness kick
    "chase"  one lit segment steps along the strip on every beat
The buffer is GRB, 3 bytes per LED, written by the board (NeoPixel order).

With a bundle's structure (the player passes the section of each beat), every
section has its own palette (the downbeat colour, and the tint beats mix with
the envelopes), the first downbeat of a drop or chorus is a full white hit, and
beats in a break flash at half the level. Without one, beats look as they always
did.
"""

from gridcast.protocol.bundle_format import ROLE_BREAK, ROLE_CHORUS, ROLE_DROP

_DOWNBEAT = (255, 180, 90)  # warm white, R G B
_IDLE = (90, 120, 255)  # the idle effect's colour: a cool blue, R G B
IDLE_PERIOD_MS = 4000  # one slow breath
IDLE_MAX = 24  # its peak brightness (of 255): dim, never a flash
# One palette per section, in turn: neighbouring sections never share one.
PALETTES = ((255, 180, 90), (60, 140, 255), (255, 60, 150), (80, 255, 120), (255, 110, 20),
            (170, 90, 255))
_HIT = (255, 255, 255)
_LOUD = (ROLE_DROP, ROLE_CHORUS)  # roles whose first downbeat is a hit


class Renderer:
    def __init__(self, board, count, effect="pulse"):
        self.board = board
        self.count = max(1, count)
        self.buf = bytearray(3 * self.count)
        self.beat_buf = bytearray(3 * self.count)  # the next beat's frame, ready in advance
        self._beat_index = None
        self._beat_bar_pos = 0  # the prepared beat's place in its bar (1: the one; 0: unknown)
        self._beat_state = (0, (0, 0, 0), 0, -1)  # level, colour, step, hit section
        self.hit_section = -1  # the section whose drop hit has shown (one hit each)
        self.effect = effect
        self.level = 0  # 0..255 brightness of the last beat, decaying
        self.colour = (0, 0, 0)
        self.step = 0
        self.frames = 0

    def _fill(self, r, g, b, start=0, stop=None):
        buf = self.buf
        stop = self.count if stop is None else stop
        for i in range(start, stop):
            j = 3 * i
            buf[j] = g
            buf[j + 1] = r
            buf[j + 2] = b

    def _show(self, beat_index=None):
        self.frames += 1
        self.board.led_write(self.buf, beat_index)

    def prepare_beat(self, index, bar_pos, strength, env, section=None):
        """Render the next beat's frame ahead of time (``strength``, ``env`` are 0..255),
        so that at the beat itself only the write to the LEDs is left to do. The frames
        shown until then keep decaying from the previous beat. ``section``: (number,
        role code, energy) of the section the beat is in, or None."""
        live = (self.level, self.colour, self.step, self.buf)
        hit_section = self.hit_section
        self.level = 128 + (strength >> 1)
        if section is None:
            down = _DOWNBEAT
            tint = None
        else:
            number, role = section[0], section[1]
            down = PALETTES[number % len(PALETTES)]
            tint = down
            if role == ROLE_BREAK:
                self.level >>= 1
            elif bar_pos == 1 and number != hit_section and role in _LOUD:
                self.level = 255
                down = _HIT
                hit_section = number
        if bar_pos == 1:
            self.colour = down
        elif tint is None:
            self.colour = (env[0] or 1, env[1] or 1, env[2] or 1)
        else:
            self.colour = ((tint[0] + env[0]) >> 1, (tint[1] + env[1]) >> 1,
                           (tint[2] + env[2]) >> 1)
        self.step = (self.step + 1) % self.count
        self.buf = self.beat_buf
        self._render(env)
        self._beat_index = index
        self._beat_bar_pos = bar_pos
        self._beat_state = (self.level, self.colour, self.step, hit_section)
        self.level, self.colour, self.step, self.buf = live

    def show_beat(self, due=None):
        """Write the prepared beat frame; the in-between frames decay from it. ``due`` is
        the raw board tick the frame was aimed at (a board may log how late it showed, and
        the beat's place in the bar).
        Returns the board's tick at which the frame showed."""
        self.frames += 1
        shown = self.board.led_write(self.beat_buf, self._beat_index, due, self._beat_bar_pos)
        self.buf[:] = self.beat_buf
        self.level, self.colour, self.step, self.hit_section = self._beat_state
        return shown

    def beat(self, index, bar_pos, strength, env, section=None):
        self.prepare_beat(index, bar_pos, strength, env, section)
        self.show_beat()

    def frame(self, env, decay=16):
        """An in-between frame: the light decays and follows the envelopes."""
        self.level = self.level - decay if self.level > decay else 0
        self._render(env)
        self._show()

    def _render(self, env):
        lvl = self.level
        if self.effect == "bands":
            kick = lvl >> 2
            self._fill(min(255, env[0] + kick), min(255, env[1] + kick), min(255, env[2] + kick))
        elif self.effect == "chase":
            self._fill(0, 0, 0)
            seg = max(1, self.count // 8)
            r, g, b = self.colour
            self._fill(r * lvl >> 8, g * lvl >> 8, b * lvl >> 8, self.step,
                       min(self.count, self.step + seg))
        else:
            r, g, b = self.colour
            self._fill(r * lvl >> 8, g * lvl >> 8, b * lvl >> 8)

    def idle(self, since_ms):
        """The idle effect (live beats ran out): a dim breathing, IDLE_PERIOD_MS long, that
        starts from dark ``since_ms`` = 0 and never rises above IDLE_MAX."""
        half = IDLE_PERIOD_MS // 2
        phase = since_ms % IDLE_PERIOD_MS
        lvl = IDLE_MAX * (phase if phase < half else IDLE_PERIOD_MS - phase) // half
        self.level = 0  # a beat after the idle effect starts from its own level
        r, g, b = _IDLE
        self._fill(r * lvl >> 8, g * lvl >> 8, b * lvl >> 8)
        self._show()

    def error(self, code):
        """Blink pattern for a fault: dim red on the first ``code`` LEDs."""
        self._fill(0, 0, 0)
        self._fill(40, 0, 0, 0, min(self.count, max(1, code)))
        self._show()

    def off(self):
        self.level = 0
        self._fill(0, 0, 0)
        self._show()

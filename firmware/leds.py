"""The LED renderer: a few beat- and envelope-driven effects into one preallocated buffer.

Effects (chosen by ``effect``):
    "pulse"  every beat flashes, the downbeat in warm white, others tinted by the
             bass/mid/high envelopes; the light decays until the next beat
    "bands"  colour follows the envelopes continuously (red bass, green mid,
             blue high), beats add a brightness kick
    "chase"  one lit segment steps along the strip on every beat
The buffer is GRB, 3 bytes per LED, written by the board (NeoPixel order).
"""

_DOWNBEAT = (255, 180, 90)  # warm white, R G B
_IDLE = (90, 120, 255)  # the idle effect's colour: a cool blue, R G B
IDLE_PERIOD_MS = 4000  # one slow breath
IDLE_MAX = 24  # its peak brightness (of 255): dim, never a flash


class Renderer:
    def __init__(self, board, count, effect="pulse"):
        self.board = board
        self.count = max(1, count)
        self.buf = bytearray(3 * self.count)
        self.beat_buf = bytearray(3 * self.count)  # the next beat's frame, ready in advance
        self._beat_index = None
        self._beat_state = (0, (0, 0, 0), 0)  # level, colour, step once that beat shows
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

    def prepare_beat(self, index, bar_pos, strength, env):
        """Render the next beat's frame ahead of time (``strength``, ``env`` are 0..255),
        so that at the beat itself only the write to the LEDs is left to do. The frames
        shown until then keep decaying from the previous beat."""
        live = (self.level, self.colour, self.step, self.buf)
        self.level = 128 + (strength >> 1)
        self.colour = _DOWNBEAT if bar_pos == 1 else (env[0] or 1, env[1] or 1, env[2] or 1)
        self.step = (self.step + 1) % self.count
        self.buf = self.beat_buf
        self._render(env)
        self._beat_index = index
        self._beat_state = (self.level, self.colour, self.step)
        self.level, self.colour, self.step, self.buf = live

    def show_beat(self):
        """Write the prepared beat frame; the in-between frames decay from it. Returns the
        board's tick at which the frame showed."""
        self.frames += 1
        shown = self.board.led_write(self.beat_buf, self._beat_index)
        self.buf[:] = self.beat_buf
        self.level, self.colour, self.step = self._beat_state
        return shown

    def beat(self, index, bar_pos, strength, env):
        self.prepare_beat(index, bar_pos, strength, env)
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

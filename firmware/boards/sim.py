"""The simulator's board: shims for the MicroPython unix port.

Settings come from the environment (set by ``gridcast sim``):
    GRIDCAST_SIM_DEVICE     device id (for the LED log)
    GRIDCAST_SIM_STATE      folder that is this device's filesystem
    GRIDCAST_SIM_SKEW_PPM   crystal error of the device clock
    GRIDCAST_SIM_OFFSET_US  offset of the device clock
    GRIDCAST_SIM_LEDLOG     JSON-lines file: one line per beat the LEDs showed
    GRIDCAST_SIM_SERIAL     a pty to use as the serial link (optional)

The clock is true time (CLOCK_REALTIME, the agent's timeline) scaled by the skew
and wrapped at 2**30 like an ESP32's ticks_us, so wrap bugs show up here too.
LED writes are stamped with true time: the bench measures the real error,
independently of what the device believes.
"""

import json
import os
import sys
import time

TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1
_VTIME = 5  # indices into termios cc on Linux (the unix port exports no names)
_VMIN = 6


def _env_int(name, default=0):
    v = os.getenv(name)
    return int(v) if v else default


class Board:
    def __init__(self):
        self.device = None
        self.code_bytes = 0  # heap taken by the imported firmware (set by sim_main)
        self.device_id = os.getenv("GRIDCAST_SIM_DEVICE") or "sim"
        state = os.getenv("GRIDCAST_SIM_STATE")
        if state:
            os.chdir(state)
        self.skew_ppm = _env_int("GRIDCAST_SIM_SKEW_PPM")
        self.offset_us = _env_int("GRIDCAST_SIM_OFFSET_US")
        self._t0 = time.time_ns() // 1000
        path = os.getenv("GRIDCAST_SIM_LEDLOG")
        self._ledlog = open(path, "a") if path else None
        self.frames = 0
        self._frames_saved_us = 0
        self._cpu_last = None

    # --- clock --------------------------------------------------------------
    def ticks_us(self):
        return self._ticks_at(time.time_ns() // 1000)

    def _ticks_at(self, true):
        """The device's tick reading at true time ``true``."""
        local = true + (true - self._t0) * self.skew_ppm // 1000000 + self.offset_us
        return local & TICKS_MAX

    def ticks_diff(self, a, b):
        return ((a - b + TICKS_HALF) & TICKS_MAX) - TICKS_HALF

    def sleep_us(self, us):
        time.sleep_us(us)

    # --- LEDs -----------------------------------------------------------------
    def led_latency_us(self):
        return 0

    def led_write(self, buf, beat_index=None, due=None, bar_pos=None):
        """Show a frame; returns the device tick at which it showed (the instant the LED
        log stamps in true time, so a stall before the write counts on both sides).

        A beat's log line also says how late it showed after ``due``, the tick the firmware
        aimed it at (``late_us``, device microseconds): the true error minus that is where
        the firmware aimed on the agent's timeline, and ``late_us`` is how long this
        process took to get there (the host's scheduling here, interrupts on a board), and
        ``bar_pos`` the beat's place in its bar (1: the one, 0: not known)."""
        true = time.time_ns() // 1000
        self.frames += 1
        if beat_index is not None and self._ledlog is not None:
            line = {"device": self.device_id, "beat_index": beat_index, "true_time_us": true}
            if due is not None:
                line["late_us"] = self.ticks_diff(self._ticks_at(true), due)
            if bar_pos is not None:
                line["bar_pos"] = bar_pos
            self._ledlog.write(json.dumps(line) + "\n")
            self._ledlog.flush()
        if true - self._frames_saved_us > 1000000:  # the bench reads the frame count here
            self._frames_saved_us = true
            with open("frames.count", "w") as f:
                f.write(str(self.frames))
        return self._ticks_at(true)

    # --- sensors ---------------------------------------------------------------
    def temperature_c(self):
        return None  # the unix port has no sensor; telemetry says so with nil

    def cpu_percent(self):
        """Share of one core this process used since the last call (from /proc)."""
        try:
            with open("/proc/self/stat") as f:
                fields = f.read().split(") ")[1].split()
            cpu = (int(fields[11]) + int(fields[12])) * 10000  # clock ticks (10 ms) -> us
        except (OSError, IndexError, ValueError):
            return 0
        now = time.time_ns() // 1000
        last = self._cpu_last
        self._cpu_last = (now, cpu)
        if last is None or now <= last[0]:
            return 0
        return min(100, (cpu - last[1]) * 100 // (now - last[0]))

    # --- serial -----------------------------------------------------------------
    def serial_streams(self):
        path = os.getenv("GRIDCAST_SIM_SERIAL")
        if not path:
            return None
        import asyncio
        import termios

        f = open(path, "r+b")
        # A file read blocks until all n bytes came; VMIN = VTIME = 0 makes the tty return
        # what it has, so asyncio gets partial reads as it does from sockets and UARTs.
        attrs = termios.tcgetattr(f.fileno())
        attrs[6][_VTIME] = 0
        attrs[6][_VMIN] = 0
        termios.tcsetattr(f.fileno(), termios.TCSANOW, attrs)
        stream = asyncio.StreamReader(f)
        return stream, stream

    def log(self, text):
        sys.stderr.write("[%s] %s\n" % (self.device_id, text))

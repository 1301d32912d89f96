"""ESP32-S3 board: NeoPixel strip, UART serial link, on-chip temperature sensor.

Pin and LED count come from config.json; the app never touches ``machine``
itself, so the same code runs in the simulator with boards/sim.py.
"""

import sys
import time

import esp32
import machine
import neopixel

WS2812_US_PER_LED = 30  # 24 bits at 800 kHz: the strip shows a frame after the last LED


class Board:
    def __init__(self, led_pin=48, led_count=16, uart_id=1, uart_tx=17, uart_rx=18,
                 baudrate=115200):
        self.device = None
        self.led_count = led_count
        self.np = neopixel.NeoPixel(machine.Pin(led_pin), led_count)
        self.uart = machine.UART(uart_id, baudrate=baudrate, tx=uart_tx, rx=uart_rx,
                                 rxbuf=4096)
        self._busy_us = 0
        self._cpu_last = time.ticks_us()

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_us(self, us):
        time.sleep_us(us)

    def led_latency_us(self):
        return WS2812_US_PER_LED * self.led_count

    def led_write(self, buf, beat_index=None, due=None, bar_pos=None):
        """Show a frame; returns the tick at which the strip latched it (write() returns
        once the last bit is out; led_latency_us() is what the scheduler allows for that).
        ``due`` (the tick a beat frame was aimed at) and ``bar_pos`` (its place in the bar)
        are for boards that log beats."""
        t0 = time.ticks_us()
        self.np.buf[:] = buf
        self.np.write()
        shown = time.ticks_us()
        self._busy_us += time.ticks_diff(shown, t0)
        return shown

    def temperature_c(self):
        # S2/S3/C3 have mcu_temperature(); chips without a usable sensor report nil.
        sensor = getattr(esp32, "mcu_temperature", None)
        if sensor is None:
            return None
        try:
            return sensor()
        except OSError:
            return None

    def cpu_percent(self):
        """LED writes and spins accounted as busy time (no per-task CPU clock on the chip)."""
        now = time.ticks_us()
        elapsed = time.ticks_diff(now, self._cpu_last)
        busy, self._busy_us, self._cpu_last = self._busy_us, 0, now
        return min(100, busy * 100 // elapsed) if elapsed > 0 else 0

    def serial_streams(self):
        import asyncio

        stream = asyncio.StreamReader(self.uart)
        return stream, stream

    def log(self, text):
        sys.stdout.write(text + "\n")

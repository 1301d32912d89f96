"""The few libjack calls that JACK-Client does not wrap: cycle times, JACK's clock, latencies.

JACK-Client (PyPI) gives clients, ports and process callbacks but not
``jack_get_cycle_times`` (when the current cycle started, in JACK's microseconds),
``jack_get_time`` (JACK's clock: CLOCK_MONOTONIC_RAW on Linux, measured in
docs/audio.md) nor port latency ranges. They are bound here in cffi ABI mode against
the same ``libjack.so.0`` that JACK-Client loads.
"""

from __future__ import annotations

from typing import Any

import cffi
import jack

_ffi = cffi.FFI()
_ffi.cdef(
    """
    typedef uint32_t jack_nframes_t;
    typedef uint64_t jack_time_t;
    typedef struct _jack_client jack_client_t;
    typedef struct _jack_port jack_port_t;
    typedef struct { jack_nframes_t min; jack_nframes_t max; } jack_latency_range_t;
    jack_time_t jack_get_time(void);
    int jack_get_cycle_times(const jack_client_t *client, jack_nframes_t *current_frames,
                             jack_time_t *current_usecs, jack_time_t *next_usecs,
                             float *period_usecs);
    jack_port_t *jack_port_by_name(jack_client_t *client, const char *port_name);
    void jack_port_get_latency_range(jack_port_t *port, int mode, jack_latency_range_t *range);
    """
)
_lib: Any = _ffi.dlopen("libjack.so.0")
_CAPTURE_LATENCY, _PLAYBACK_LATENCY = 0, 1  # jack_latency_callback_mode_t


class JackClock:
    """Cycle times and port latencies for one open JACK-Client ``jack.Client``.

    ``cycle_times`` is meant for the process callback: it reuses preallocated
    out-parameters, so it allocates nothing per call.
    """

    def __init__(self, client: jack.Client) -> None:
        self._client = client
        # The client pointer belongs to JACK-Client's own cffi instance: pass it by address.
        address = int(jack._ffi.cast("uintptr_t", client._ptr))
        self._ptr = _ffi.cast("jack_client_t *", address)
        self._frames = _ffi.new("jack_nframes_t *")
        self._start = _ffi.new("jack_time_t *")
        self._next = _ffi.new("jack_time_t *")
        self._period = _ffi.new("float *")

    def cycle_times(self) -> tuple[int, int, int]:
        """(first frame, start µs, next cycle's start µs) of the current cycle, JACK clock."""
        _lib.jack_get_cycle_times(self._ptr, self._frames, self._start, self._next, self._period)
        return int(self._frames[0]), int(self._start[0]), int(self._next[0])

    @staticmethod
    def now_us() -> int:
        """JACK's clock in µs (needs an open client in the process)."""
        return int(_lib.jack_get_time())

    def playback_latency_frames(self, port_name: str) -> int:
        """The largest playback latency JACK reports for a port, in frames (0 if unknown)."""
        port = _lib.jack_port_by_name(self._ptr, port_name.encode())
        if port == _ffi.NULL:
            return 0
        latency = _ffi.new("jack_latency_range_t *")
        _lib.jack_port_get_latency_range(port, _PLAYBACK_LATENCY, latency)
        return int(latency.max)

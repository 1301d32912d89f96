"""The virtual room's acoustics: what the speakers play reaches the microphone a known time later.

A machine without a sound card has no microphone and no air. ``RoomLoopback`` stands in
for both: a JACK client (PyPI JACK-Client, in a child interpreter of its own so its
real-time callback never waits for another process's GIL) that takes what PortAudio
plays into the room and feeds it, delayed, into every PortAudio input stream instead of
the room's (silent) ``system:capture`` ports. It keeps those connections itself: it
polls the graph and wires every ``PortAudio…:out_N`` / ``in_N`` it finds, so a
``gridcast calibrate`` run needs no hook.

What "a delay of D" means, in JACK's own terms (the same ones ``RoomRecorder`` uses):
a sample PortAudio writes in the cycle that starts at frame F is *heard* at
``F + L_out`` (L_out: the speaker port's playback latency; PortAudio's DAC time says
the same), reaches the microphone D later, and an ADC that captures a sample at frame A
delivers it in the cycle starting at ``A + L_in`` (L_in: the capture port's latency;
PortAudio's ADC time says the same). So the client delays by ``L_out + D + L_in`` in
all, less one period: PortAudio and this client form a loop in the JACK graph, and
JACK breaks a loop with a *feedback* connection whose data arrives one cycle later
(measured: docs/audio.md, calibration). D is rounded to a whole frame (20.8 µs at 48 kHz).
"""

from __future__ import annotations

import select
import subprocess
import sys
from typing import Any

import numpy as np

from gridcast.agent.audio.errors import RoomError
from gridcast.agent.audio.room import import_jack

SPEAKER_PORT = "system:playback_1"
MICROPHONE_PORT = "system:capture_1"
PORTAUDIO_PREFIX = "PortAudio"
_POLL_S = 0.005  # how often the graph is checked for new PortAudio ports
_START_TIMEOUT_S = 30.0


class RoomLoopback:
    """Feed the room's speaker signal back to its microphones ``delay_ms`` later."""

    def __init__(self, server_name: str, delay_ms: float, drift_ms_per_s: float = 0.0,
                 client_name: str = "gridcast-loopback") -> None:
        """``drift_ms_per_s``: the delay grows this much per second of audio (a microphone
        walking away: what makes a calibration's repeats disagree)."""
        self.server_name = server_name
        self.delay_ms = float(delay_ms)
        self.drift_ms_per_s = float(drift_ms_per_s)
        self.client_name = client_name
        self.delay_frames = 0  # the total the client applies (known once started)
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> RoomLoopback:
        """Start the client (a child interpreter); RoomError when the room is missing."""
        # A fresh interpreter, as RoomRecorder's: no copy of this process's JACK or
        # PortAudio state, no re-import of the caller's main module. One line each way.
        command = [sys.executable, "-m", "gridcast.agent.audio.loopback", self.server_name,
                   repr(self.delay_ms), repr(self.drift_ms_per_s), self.client_name]
        self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
        stdout = self._child.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], _START_TIMEOUT_S)
        answer = stdout.readline().strip() if ready else ""
        if not answer.startswith("ready "):
            self.stop()
            raise RoomError(answer.removeprefix("error ") if answer.startswith("error ") else
                            f"the loopback for room {self.server_name!r} did not start within "
                            f"{_START_TIMEOUT_S:.0f} s")
        self.delay_frames = int(answer.split()[1])
        return self

    def stop(self) -> None:
        """Disconnect and end the child (it stops when its stdin closes)."""
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()

    def __enter__(self) -> RoomLoopback:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Delay:
    """A ring buffer: each call returns what came in ``delay_frames`` earlier (plus
    ``drift`` frames per frame since the start)."""

    def __init__(self, delay_frames: int, period_frames: int, drift: float = 0.0,
                 max_seconds: float = 60.0, rate_hz: int = 48000) -> None:
        longest = delay_frames + int(abs(drift) * max_seconds * rate_hz)
        size = 1
        while size < longest + 4 * period_frames:
            size *= 2
        self.ring = np.zeros(size, np.float32)
        self.delay = delay_frames
        self.drift = drift
        self.longest = longest
        self.write = 0

    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        n, size = block.size, self.ring.size
        self._copy_in(block, self.write % size)
        delay = min(max(0, self.delay + int(self.drift * self.write)), self.longest)
        start = (self.write - delay) % size
        first = min(n, size - start)
        out[:first] = self.ring[start:start + first]
        out[first:] = self.ring[:n - first]
        self.write += n

    def _copy_in(self, block: np.ndarray, at: int) -> None:
        first = min(block.size, self.ring.size - at)
        self.ring[at:at + first] = block[:first]
        self.ring[:block.size - first] = block[first:]


def _latency_frames(client: Any, port: str, capture: bool) -> int:
    from gridcast.agent.audio.jacklib import JackClock, _ffi, _lib

    clock = JackClock(client)
    found = _lib.jack_port_by_name(clock._ptr, port.encode())
    if found == _ffi.NULL:
        return 0
    latency = _ffi.new("jack_latency_range_t *")
    _lib.jack_port_get_latency_range(found, 0 if capture else 1, latency)
    return int(latency.max)


def _loop_in_child(server_name: str, delay_ms: float, drift_ms_per_s: float,
                   client_name: str) -> None:
    """The child: run the delay until stdin closes. Says ``ready FRAMES`` or ``error ...``."""
    jack = import_jack()
    try:
        client = jack.Client(client_name, no_start_server=True, servername=server_name)
    except jack.JackOpenError:
        print(f"error cannot reach room {server_name!r}: no JACK server of that name is "
              "running (start a VirtualRoom first)", flush=True)
        return
    rate, period = int(client.samplerate), int(client.blocksize)
    total = (round(delay_ms * 1e-3 * rate) + _latency_frames(client, SPEAKER_PORT, False)
             + _latency_frames(client, MICROPHONE_PORT, True) - period)
    if total < 0:
        client.close()
        print(f"error a loopback delay of {delay_ms} ms is shorter than the room's own "
              "latency allows", flush=True)
        return
    delay = _Delay(total, period, drift_ms_per_s * 1e-3, rate_hz=rate)
    inport = client.inports.register("in")
    outport = client.outports.register("out")

    def process(frames: int) -> None:
        delay.process(inport.get_array(), outport.get_array())

    client.set_process_callback(process)
    client.activate()
    print(f"ready {total}", flush=True)
    try:
        while not select.select([sys.stdin], [], [], _POLL_S)[0]:
            try:
                _wire(client, inport, outport)
            except jack.JackError:  # a port went away between listing and wiring
                continue
    finally:
        client.deactivate()
        client.close()


def _wire(client: Any, inport: Any, outport: Any) -> None:
    """Every PortAudio output -> our input (the microphone hears all speakers); our output
    -> every PortAudio input, alone (PortAudio numbers ports on: out_0, out_1, ...)."""
    for port in client.get_ports(f"{PORTAUDIO_PREFIX}.*:out_[0-9]+$"):
        if inport.name not in {p.name for p in client.get_all_connections(port)}:
            client.connect(port, inport)
    for port in client.get_ports(f"{PORTAUDIO_PREFIX}.*:in_[0-9]+$"):
        sources = {p.name for p in client.get_all_connections(port)}
        for other in sources - {outport.name}:
            client.disconnect(other, port)
        if outport.name not in sources:
            client.connect(outport, port)


if __name__ == "__main__":
    _loop_in_child(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4])

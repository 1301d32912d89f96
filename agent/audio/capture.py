"""Record what plays into a JACK room, knowing when each sample is heard on the agent timeline.

``RoomRecorder`` is a JACK client (PyPI JACK-Client) whose input is connected to the
ports that feed the room's speakers (by default everything connected to
``system:playback_1``, e.g. PortAudio's ``PortAudio:out_0``). For every buffer it keeps
the samples and the cycle's frame time and start/end in JACK's clock
(``jack_get_cycle_times``). A sample written in the cycle that starts at frame F is
heard ``L`` frames later, L being the playback latency JACK reports for the speaker
port (what a sound card's DAC would add); JACK's clock is mapped onto the agent clock
with bracketed clock pairs taken at start and stop. JACK's cycle times come from its
delay-locked loop: exact to a few µs in steady state, unreliable for seconds after an
xrun (``Capture.settled``).
``clicks.find_onsets`` finds sharp onsets in a capture to a fraction of a sample.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridcast.agent.audio.errors import RoomError
from gridcast.agent.audio.room import import_jack
from gridcast.agent.clock import now_us
from gridcast.agent.link_clock import LinkClockMap

SPEAKER_PORT = "system:playback_1"
# After an xrun the dummy driver re-anchors its cycles and JACK restarts the filter (DLL)
# behind its cycle times; the filter rang for about 8 s, up to 16 ms off, after a stall
# measured here (docs/audio.md). Heard times that soon after an xrun are not trusted.
DLL_SETTLE_S = 10.0
_META_FIELDS = 4  # write index, first frame, cycle start µs, next cycle start µs (JACK clock)


@dataclass
class Capture:
    """Recorded samples and when each was heard (agent µs)."""

    samples: np.ndarray  # float32, mono (the sum of the recorded sources)
    rate_hz: int
    buffer_start: np.ndarray  # int64: index in ``samples`` of each buffer's first sample
    buffer_heard_us: np.ndarray  # float64: agent µs at which that sample is heard
    buffer_us_per_frame: np.ndarray  # float64: length of one frame in that buffer, agent µs
    buffer_frame: np.ndarray  # int64: JACK frame time of each buffer's first sample
    latency_frames: int  # the speaker port's playback latency included above
    xruns: int
    xrun_us: list[int]  # agent µs when JACK reported each xrun
    dropped_buffers: int

    def settled(self, heard_us: np.ndarray) -> np.ndarray:
        """False where JACK's timing was still settling after an xrun (``DLL_SETTLE_S``)."""
        at = np.asarray(heard_us, dtype=np.float64)
        ok = np.ones(at.shape, dtype=bool)
        for xrun in self.xrun_us:
            ok &= ~((at >= xrun) & (at < xrun + DLL_SETTLE_S * 1e6))
        return ok

    def gaps(self) -> list[tuple[int, int]]:
        """(sample index, frames) where the recorder missed cycles: not silence that was
        played, but audio that was never recorded (a gap check must tell them apart)."""
        if self.buffer_frame.size < 2:
            return []
        lengths = np.diff(np.append(self.buffer_start, self.samples.size))
        # Frame times are 32-bit and wrap (every 24.9 h at 48 kHz).
        missing = (np.diff(self.buffer_frame) - lengths[:-1]) % (1 << 32)
        return [(int(self.buffer_start[k + 1]), int(missing[k]))
                for k in np.flatnonzero(missing)]

    def heard_us(self, index: float | np.ndarray) -> np.ndarray:
        """Agent µs at which (fractional) sample ``index`` was heard."""
        at = np.asarray(index, dtype=np.float64)
        k = np.clip(np.searchsorted(self.buffer_start, at, side="right") - 1, 0, None)
        return self.buffer_heard_us[k] + (at - self.buffer_start[k]) * self.buffer_us_per_frame[k]


class RoomRecorder:
    """A JACK client recording the room's speaker feed, with each buffer's frame time.

    ``sources``: output port names to record (summed); default: whatever is connected
    to the room's first speaker port when ``start()`` runs. ``max_seconds`` of audio are
    preallocated so the process callback never allocates.

    With ``own_process=True`` (the default) the client runs in a child interpreter
    (``python -m gridcast.agent.audio.capture``; the capture comes back as a file): its
    real-time callback then never waits for the GIL of the process that plays.
    """

    def __init__(self, server_name: str, sources: list[str] | None = None,
                 max_seconds: float = 900.0, client_name: str = "gridcast-recorder",
                 own_process: bool = True) -> None:
        self.server_name = server_name
        self._own_process = own_process
        self._child: Any = None  # (process, folder, capture file) of the recording child
        self._start_timeout_s = 30.0
        self._sources = sources
        self._max_seconds = max_seconds
        self._client_name = client_name
        self._client: Any = None  # a jack.Client while recording
        self._samples = np.zeros(0, np.float32)
        self._meta = np.zeros((0, _META_FIELDS), np.int64)
        self._write = 0
        self._count = 0
        self._dropped = 0
        self._xrun_us: list[int] = []
        self._latency_frames = 0
        self._rate_hz = 0
        self._map: LinkClockMap | None = None

    def start(self) -> RoomRecorder:
        """Connect and record; raises RoomError when the room or its sources are missing."""
        if self._own_process:
            return self._start_child()
        jack = import_jack()
        from gridcast.agent.audio.jacklib import JackClock  # loads libjack: after the check

        try:
            client = jack.Client(self._client_name, no_start_server=True,
                                 servername=self.server_name)
        except jack.JackOpenError as exc:
            raise RoomError(f"cannot record room {self.server_name!r}: no JACK server of that "
                            "name is running (start a VirtualRoom first)") from exc
        self._client = client
        clock = JackClock(client)
        sources = self._sources
        if sources is None:
            sources = [p.name for p in client.get_all_connections(SPEAKER_PORT)]
        if not sources:
            client.close()
            self._client = None
            raise RoomError(f"nothing plays into room {self.server_name!r} ({SPEAKER_PORT} "
                            "has no connections): open the output before the recorder")
        rate, block = client.samplerate, client.blocksize
        self._rate_hz = int(rate)
        buffers = int(self._max_seconds * rate / block) + 1
        self._samples = np.zeros(buffers * block, np.float32)
        self._meta = np.zeros((buffers, _META_FIELDS), np.int64)
        port = client.inports.register("in")

        def process(frames: int) -> None:
            if self._write + frames > self._samples.size:
                self._dropped += 1
                return
            first, start_us, next_us = clock.cycle_times()
            self._samples[self._write:self._write + frames] = port.get_array()
            self._meta[self._count] = (self._write, first, start_us, next_us)
            self._write += frames
            self._count += 1

        def xrun(delay_us: float) -> None:
            self._xrun_us.append(now_us())

        client.set_process_callback(process)
        client.set_xrun_callback(xrun)
        self._latency_frames = clock.playback_latency_frames(SPEAKER_PORT)
        # JACK's clock (CLOCK_MONOTONIC_RAW) against the agent's, by bracketed reads.
        self._map = LinkClockMap(JackClock.now_us, now_us)
        client.activate()
        for source in sources:
            client.connect(source, port)
        return self

    def _start_child(self) -> RoomRecorder:
        # A fresh interpreter (not a fork: no copy of this process's JACK or PortAudio
        # state) running this module; a pipe line each way, the capture through a file.
        folder = tempfile.mkdtemp(prefix="gridcast-recorder-")
        path = os.path.join(folder, "capture.npz")
        command = [sys.executable, "-m", "gridcast.agent.audio.capture", self.server_name,
                   path, str(self._max_seconds), self._client_name, *(self._sources or [])]
        log = os.path.join(folder, "stderr.log")
        with open(log, "w") as stderr:  # a file, not a pipe: libjack may say a lot
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, text=True)
        self._child = (child, folder, path)
        answer = _read_line(child, self._start_timeout_s)
        if answer != "ready":
            with open(log) as stderr:
                said = " | ".join(stderr.read().strip().splitlines()[-2:]) or "no output"
            self._stop_child()
            raise RoomError(answer.removeprefix("error ") if answer.startswith("error ") else
                            f"the recorder for room {self.server_name!r} did not start: "
                            f"{said}")
        return self

    def _stop_child(self) -> Capture | None:
        child, folder, path = self._child
        self._child = None
        capture = None
        try:
            if child.poll() is None and child.stdin is not None:
                child.stdin.write("stop\n")
                child.stdin.flush()
                if _read_line(child, self._start_timeout_s) == "done":
                    capture = _load_capture(path)
        except (BrokenPipeError, OSError):
            capture = None
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate()
            shutil.rmtree(folder, ignore_errors=True)
        return capture

    def stop(self) -> Capture:
        """Stop recording and return everything captured."""
        if self._child is not None:
            capture = self._stop_child()
            if capture is None:
                raise RoomError(f"the recorder for room {self.server_name!r} died")
            return capture
        client, self._client = self._client, None
        if client is None or self._map is None:
            raise RoomError("the recorder was not started")
        self._map.update(force=True)  # a second pair: JACK's clock rate against the agent's
        client.deactivate()
        client.close()
        meta = self._repair_late_reads(self._meta[:self._count].copy())
        frames = np.diff(np.append(meta[:, 0], self._write)).astype(np.float64)
        jack_us_per_frame = (meta[:, 3] - meta[:, 2]) / np.maximum(frames, 1.0)
        heard_jack_us = meta[:, 2] + self._latency_frames * jack_us_per_frame
        scale = 1.0 + self._map.rate_ppm * 1e-6
        heard_us = self._map.to_agent_us(0.0) + heard_jack_us.astype(np.float64) * scale
        us_per_frame = jack_us_per_frame * scale
        return Capture(samples=self._samples[:self._write].copy(), rate_hz=self._rate_hz,
                       buffer_start=meta[:, 0].copy(), buffer_heard_us=heard_us,
                       buffer_us_per_frame=us_per_frame, buffer_frame=meta[:, 1].copy(),
                       latency_frames=self._latency_frames,
                       xruns=len(self._xrun_us), xrun_us=list(self._xrun_us),
                       dropped_buffers=self._dropped)

    @staticmethod
    def _repair_late_reads(meta: np.ndarray) -> np.ndarray:
        """A process callback that runs after the next cycle began reads that cycle's
        times (JACK keeps one set, for the current cycle): frames then step 2 buffers
        and 0. Such a buffer gets the frame between its neighbours and the mean of their
        cycle times."""
        if meta.shape[0] < 3:
            return meta
        lengths = np.diff(meta[:, 0])
        step = np.diff(meta[:, 1]) % (1 << 32)
        late = np.flatnonzero((step[:-1] == 2 * lengths[:-1]) & (step[1:] == 0)) + 1
        for k in late:
            meta[k, 1] = (meta[k - 1, 1] + lengths[k - 1]) % (1 << 32)
            meta[k, 2] = (meta[k - 1, 2] + meta[k + 1, 2]) // 2
            meta[k, 3] = meta[k + 1, 2]
        return meta

    def __enter__(self) -> RoomRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._client is not None or self._child is not None:
            self.stop()


def _read_line(child: subprocess.Popen[str], timeout_s: float) -> str:
    """One line from the child's stdout, or "" on timeout or end of file."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    return child.stdout.readline().strip() if ready else ""


def _save_capture(capture: Capture, path: str) -> None:
    np.savez(path, samples=capture.samples, rate_hz=capture.rate_hz,
             buffer_start=capture.buffer_start, buffer_heard_us=capture.buffer_heard_us,
             buffer_us_per_frame=capture.buffer_us_per_frame,
             buffer_frame=capture.buffer_frame, latency_frames=capture.latency_frames,
             xruns=capture.xruns, xrun_us=np.asarray(capture.xrun_us, np.int64),
             dropped_buffers=capture.dropped_buffers)


def _load_capture(path: str) -> Capture:
    with np.load(path) as data:
        return Capture(samples=data["samples"], rate_hz=int(data["rate_hz"]),
                       buffer_start=data["buffer_start"],
                       buffer_heard_us=data["buffer_heard_us"],
                       buffer_us_per_frame=data["buffer_us_per_frame"],
                       buffer_frame=data["buffer_frame"],
                       latency_frames=int(data["latency_frames"]), xruns=int(data["xruns"]),
                       xrun_us=[int(t) for t in data["xrun_us"]],
                       dropped_buffers=int(data["dropped_buffers"]))


def _record_in_child(argv: list[str]) -> None:
    """The child of an own-process RoomRecorder: record until "stop", save, say "done"."""
    server_name, path, max_seconds, client_name, *sources = argv
    recorder = RoomRecorder(server_name, sources or None, float(max_seconds), client_name,
                            own_process=False)
    try:
        recorder.start()
    except RoomError as exc:
        print(f"error {exc}", flush=True)
        return
    print("ready", flush=True)
    sys.stdin.readline()  # "stop", or end of file when the parent went away
    _save_capture(recorder.stop(), path)
    print("done", flush=True)


if __name__ == "__main__":
    _record_in_child(sys.argv[1:])

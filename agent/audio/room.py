"""A virtual room: a private JACK server with the dummy backend, for machines without a sound card.

``VirtualRoom`` starts ``jackd -n NAME -d dummy -r RATE -p PERIOD`` as a child process
(never daemonised), waits until a JACK client can connect (polling with a deadline, no
fixed sleeps), points this process's PortAudio at it and stops it on exit::

    with VirtualRoom() as room:          # JACK_DEFAULT_SERVER=room.name from here on
        out = AudioOutput(room.output_device)   # PortAudio's JACK host API
        ...

PortAudio reads ``JACK_DEFAULT_SERVER`` only when it initialises (its JACK host API
opens one client at ``Pa_Initialize``), so the room re-initialises sounddevice after
setting it; streams opened before that keep talking to whatever was there before.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

from gridcast.agent.audio.errors import RoomError

JACK_PACKAGE = "jackd2"
JACK_HOST_API = "JACK Audio Connection Kit"
_counter = itertools.count(1)
_POLL_S = 0.01


def import_jack() -> Any:
    """The JACK-Client module; RoomError naming the packages when libjack is missing."""
    try:
        import jack
    except (ImportError, OSError) as exc:  # JACK-Client raises OSError without libjack
        raise RoomError(f"JACK is not usable ({exc}): install the Debian package "
                        f"{JACK_PACKAGE} and the Python package JACK-Client") from exc
    return jack


def refresh_portaudio() -> None:
    """Re-initialise PortAudio so it sees the audio servers and devices that exist now."""
    import sounddevice as sd  # here: a recorder's child process never starts PortAudio

    sd._terminate()
    sd._initialize()


class VirtualRoom:
    """A private JACK server (dummy backend) running as a child of this process.

    ``rate_hz`` and ``period_frames`` are the server's sample rate and buffer size. The
    dummy backend paces its cycles on the system clock, so its sample clock runs at
    ``rate_hz`` of real time (measured within a few ppm, docs/audio.md). A card whose
    clock runs off its nominal rate is modelled by a room at a slightly different rate
    (e.g. 48005 Hz for +104 ppm) played by an output that assumes 48000 Hz.
    """

    def __init__(self, rate_hz: int = 48000, period_frames: int = 256, name: str | None = None,
                 start_timeout_s: float = 10.0) -> None:
        self.rate_hz = int(rate_hz)
        self.period_frames = int(period_frames)
        self.name = name or f"gridcast-room-{os.getpid()}-{next(_counter)}"
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._previous_server: str | None = None

    @property
    def output_device(self) -> str:
        """The sounddevice query string of the room's speakers (PortAudio's JACK device)."""
        return f"system, {JACK_HOST_API}"

    @property
    def pid(self) -> int | None:
        """The JACK server's process id (None before start)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> VirtualRoom:
        """Start jackd and return once a client can connect; raises RoomError otherwise."""
        jackd = shutil.which("jackd") or ("/usr/bin/jackd" if os.path.exists("/usr/bin/jackd")
                                          else None)
        if jackd is None:
            raise RoomError(f"jackd not found: install the Debian package {JACK_PACKAGE} "
                            f"(apt-get install {JACK_PACKAGE}) for the virtual room")
        # Kept open for the server's lifetime (closed in stop()): its tail explains failures.
        self._log = tempfile.NamedTemporaryFile(prefix="gridcast-jackd-", suffix=".log")  # noqa: SIM115
        command = [jackd, "-n", self.name, "-d", "dummy", "-r", str(self.rate_hz),
                   "-p", str(self.period_frames)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._previous_server = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        refresh_portaudio()
        return self

    def _wait_ready(self) -> None:
        jack = import_jack()
        deadline = time.monotonic() + self.start_timeout_s
        # libjack prints every failed connection attempt; silence it while polling.
        jack.set_error_function(lambda message: None)
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RoomError(f"jackd exited with status {self._process.returncode} "
                                    f"while starting room {self.name}: {self._log_tail()}")
                try:
                    client = jack.Client("gridcast-room-probe", no_start_server=True,
                                         servername=self.name)
                except jack.JackOpenError:
                    if time.monotonic() > deadline:
                        raise RoomError(
                            f"jackd did not answer within {self.start_timeout_s:.0f} s "
                            f"(room {self.name}): {self._log_tail()}") from None
                    time.sleep(_POLL_S)  # polling interval of the readiness check
                    continue
                client.close()
                return
        finally:
            jack.set_error_function(None)

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        with open(self._log.name, "rb") as log:
            lines = log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no output"

    def stop(self) -> None:
        """Stop jackd (SIGTERM, then SIGKILL after 5 s) and restore JACK_DEFAULT_SERVER."""
        # PortAudio first: its JACK client must leave while the server still answers
        # (PortAudio asserts when closing a client whose server is gone).
        if os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._previous_server is None:
                del os.environ["JACK_DEFAULT_SERVER"]
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._previous_server
            refresh_portaudio()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VirtualRoom:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

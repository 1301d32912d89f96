"""Shared fixtures: small audio files made on the spot (nothing binary is committed)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from gridcast.host.evaluation import demo_audio
from tests.mqtt_publisher import close_publishers

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def click_track(bpm: float, seconds: float, sr: int = 22050, start_s: float = 0.5,
                accent_every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decaying noise bursts on every beat, louder on every ``accent_every``-th."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    beats = np.arange(start_s, seconds - 0.1, 60.0 / bpm)
    n = int(0.03 * sr)
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.006 * sr))
    for k, t in enumerate(beats):
        i = round(t * sr)
        gain = 0.8 if k % accent_every == 0 else 0.4
        x[i:i + len(burst)] += (gain * burst[:len(x) - i]).astype(np.float32)
    return x, beats


@pytest.fixture(scope="session")
def demo_song(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("demo")
    signal, beats, bib = demo_audio.render(seconds=12.0)
    path = str(folder / "song.wav")
    sf.write(path, signal, demo_audio.SAMPLE_RATE)
    return path, beats, bib


@pytest.fixture
def song_copy(tmp_path, demo_song) -> str:
    """A private copy of the demo song in this test's folder."""
    import shutil

    target = tmp_path / "song.wav"
    shutil.copy(demo_song[0], target)
    return str(target)


class ClickInput:
    """sounddevice.InputStream's interface, playing a 120 BPM click track (there is no audio
    input on a build machine). As fast as it can by default; with ``pace`` set, at a sound
    card's pace from the agent time ``ClickInput.music_at_us`` on (0: at once)."""

    music_at_us = 0
    pace = False
    seconds = 14.0
    start_s = 0.25

    def __init__(self, samplerate, blocksize, channels, dtype, callback, device=None):
        import threading

        self.signal, _ = click_track(120.0, self.seconds, sr=int(samplerate),
                                     start_s=self.start_s)
        self.rate, self.blocksize, self.callback = int(samplerate), blocksize, callback
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        from gridcast.agent.clock import now_us

        if self.pace and self.stopped.wait(max(0.0, (self.music_at_us - now_us()) / 1e6)):
            return
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(self.signal) - self.blocksize, self.blocksize)):
            due = t0 + (i + 1) * self.blocksize / self.rate if self.pace else 0.0
            if self.stopped.wait(max(0.0, due - time.monotonic())):
                return
            self.callback(self.signal[start:start + self.blocksize, None], self.blocksize,
                          None, None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto on a free loopback port, with its own folder."""
    from gridcast.agent.broker import Mosquitto

    with Mosquitto(folder=str(tmp_path / "broker")) as broker:
        yield broker


def _pg_bindir() -> str:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; "
                           "scripts/setup does it)")
    return os.path.dirname(found[-1])


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server from Debian's packages, in a temporary cluster."""
    import pwd
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from gridcast.agent.broker import free_port

    bindir = _pg_bindir()
    # Not under pytest's temporary folders: those are private to root, and the server
    # runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="gridcast-postgres-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use its own user
        user = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        shutil.chown(sock, user.pw_uid, user.pw_gid)
        data.mkdir()
        shutil.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    with open(root / "postgres.log", "wb") as log:
        server = subprocess.Popen([*prefix, f"{bindir}/postgres", "-D", str(data), "-p",
                                   str(port), "-k", str(sock), "-c", "listen_addresses=127.0.0.1",
                                   "-c", "fsync=off"], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 20
    while subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"PostgreSQL did not start; see {root}/postgres.log")
        time.sleep(0.1)
    psql = [f"{bindir}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, "CREATE ROLE gridcast LOGIN PASSWORD 'gridcast'"], check=True)
    subprocess.run([*psql, "CREATE DATABASE gridcast OWNER gridcast"], check=True)
    yield f"postgresql://gridcast:gridcast@127.0.0.1:{port}/gridcast"
    server.terminate()
    server.wait(10)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _publishers_closed():
    """Every test's paho publishers stopped after it (tests/mqtt_publisher.py)."""
    yield
    close_publishers()

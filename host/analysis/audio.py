"""Opening audio files for analysis: checks first, then block-wise mono decoding.

Everything downstream works from a stream of mono float32 blocks, so a long
file never has to sit in memory whole (a 10-minute stereo 48 kHz file would
need 230 MB as float32; the blocks need a few MB).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from gridcast.host.errors import AudioError

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000
MIN_DURATION_S = 2.0  # shorter clips hold too few beats to estimate a tempo from
DEFAULT_MAX_DURATION_S = 3600.0
BLOCK_FRAMES = 65_536


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def file_sha256(path: str) -> str:
    """SHA-256 of the file's bytes: the identity of a track for caches and bundles."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def probe(path: str, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> AudioInfo:
    """Check that ``path`` is readable audio gridcast can analyze; raise AudioError if not."""
    if not os.path.exists(path):
        raise AudioError(path, "no such file", "check the path")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "not readable (permission denied)", "check the file's permissions")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(
            path, f"not a readable audio file ({_clean(exc)})",
            "supported: WAV, FLAC, OGG/Vorbis, MP3",
        ) from exc
    result = AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                       str(info.format))
    if not MIN_SAMPLE_RATE_HZ <= result.sample_rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(path, f"sample rate {result.sample_rate} Hz is outside "
                         f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz", "resample the file")
    if result.frames <= 0:
        raise AudioError(path, "contains no audio samples")
    if result.duration_s < MIN_DURATION_S:
        raise AudioError(path, f"too short ({result.duration_s:.2f} s); beat analysis "
                         f"needs at least {MIN_DURATION_S:.0f} s of audio")
    if result.duration_s > max_duration_s:
        raise AudioError(path, f"too long ({_hms(result.duration_s)}); the limit is "
                         f"{_hms(max_duration_s)}",
                         "raise it with --max-duration or split the file")
    return result


def iter_mono_blocks(info: AudioInfo, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Yield the file as consecutive mono float32 blocks (channels averaged)."""
    try:
        with sf.SoundFile(info.path) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return
                # A product with equal weights: numpy's mean along a short axis is ~30x slower.
                mono = (block @ np.full(block.shape[1], 1 / block.shape[1], dtype=np.float32)
                        if block.shape[1] > 1 else block[:, 0])
                if not np.all(np.isfinite(mono)):
                    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
                yield mono
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(info.path, f"decoding failed, the file may be truncated or "
                         f"corrupt ({_clean(exc)})") from exc


def read_mono(info: AudioInfo) -> np.ndarray:
    """The whole file as one mono float32 array (for short clips, plots and tests)."""
    blocks = list(iter_mono_blocks(info))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _clean(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile repeats the path in its messages; the caller already names the file.
    return text.replace("Error opening ", "").strip()


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

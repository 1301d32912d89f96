"""A room's sound at a microphone: reverberation and a crowd, for the live benches.

Live mode may listen to the room through a microphone rather than a line from the mixer.
The virtual room (JACK's dummy backend) carries the music from the player to live mode
sample for sample, with no air between them. ``RoomAcoustics`` stands in for the air and
the audience:

- **Reverberation.** The direct sound, then a diffuse tail from 8 ms on: decaying noise
  in three bands. Below 500 Hz the tail falls 60 dB in ``reverb_s`` (the RT60), from
  500 Hz to 2 kHz in 0.8 of that, and above 2 kHz in half of it, because air and soft
  surfaces absorb the highs. The tail is scaled so that the direct sound stands
  ``drr_db`` above it (the direct-to-reverberant ratio: about +5 dB near a speaker, 0 dB
  at the critical distance, -5 dB at the back of a hall).
- **A crowd.** Pink noise whose level changes at random four times a second (voices),
  plus claps: 5 ms bursts at random times, 1.5 a second on average, not on the beat. The
  crowd sits ``crowd_snr_db`` below the music at the microphone (RMS over the clip).

The direct sound has no delay. The microphone's distance is a latency that calibration
measures and removes (``gridcast calibrate``, or the bench's click train), so it is left
out here. Everything is seeded: the room's tail comes from ``seed``, and each clip's
crowd from ``seed`` and the clip's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

TAIL_START_S = 0.008  # the first reflections arrive after the direct sound
# (low edge Hz or None, high edge Hz or None, share of reverb_s the band takes to fall 60 dB)
TAIL_BANDS = ((None, 500.0, 1.0), (500.0, 2000.0, 0.8), (2000.0, None, 0.5))
CROWD_LEVEL_RATE_HZ = 4.0  # how often the crowd's level changes
CLAPS_PER_S = 1.5
CLAP_S = 0.005
REVERB_RANGE_S = (0.1, 5.0)
DRR_RANGE_DB = (-20.0, 20.0)
SNR_RANGE_DB = (-10.0, 60.0)


@dataclass(frozen=True)
class RoomAcoustics:
    """What a microphone in the room adds to the music: see the module docstring.

    ``reverb_s`` 0 means no reverberation and ``crowd_snr_db`` None means no crowd;
    with both, ``apply`` returns the signal unchanged.
    """

    reverb_s: float = 0.0
    drr_db: float = 0.0
    crowd_snr_db: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reverb_s != 0 and not REVERB_RANGE_S[0] <= self.reverb_s <= REVERB_RANGE_S[1]:
            raise ValueError(f"reverb time {self.reverb_s} s is out of range: give 0 (none) "
                             f"or {REVERB_RANGE_S[0]}-{REVERB_RANGE_S[1]} s (a club is "
                             "about 0.6-1, a hall 1.5-2)")
        if not DRR_RANGE_DB[0] <= self.drr_db <= DRR_RANGE_DB[1]:
            raise ValueError(f"direct-to-reverberant ratio {self.drr_db} dB is out of range "
                             f"{DRR_RANGE_DB[0]:g}..{DRR_RANGE_DB[1]:g} dB")
        if self.crowd_snr_db is not None and not (
                SNR_RANGE_DB[0] <= self.crowd_snr_db <= SNR_RANGE_DB[1]):
            raise ValueError(f"crowd level {self.crowd_snr_db} dB below the music is out of "
                             f"range {SNR_RANGE_DB[0]:g}..{SNR_RANGE_DB[1]:g} dB")

    @property
    def dry(self) -> bool:
        return self.reverb_s == 0 and self.crowd_snr_db is None

    def describe(self) -> dict:
        return {"reverb_s": self.reverb_s, "drr_db": self.drr_db,
                "crowd_snr_db": self.crowd_snr_db, "seed": self.seed}

    @cache  # noqa: B019 - a few small frozen rooms per process; every clip reuses its own
    def impulse_response(self, rate_hz: int) -> np.ndarray:
        """The room from the speaker to the microphone: 1.0 at sample 0 (the direct
        sound), then the tail (none without reverberation). Computed once per rate:
        do not write to it."""
        if self.reverb_s == 0:
            direct = np.ones(1)
            direct.setflags(write=False)
            return direct
        n = int(self.reverb_s * 1.2 * rate_hz)
        t = np.arange(n) / rate_hz
        rng = np.random.default_rng([self.seed, 0])
        tail = np.zeros(n)
        for low, high, share in TAIL_BANDS:
            if low is None:
                sos = butter(4, high, "lowpass", fs=rate_hz, output="sos")
            elif high is None:
                sos = butter(4, low, "highpass", fs=rate_hz, output="sos")
            else:
                sos = butter(4, [low, high], "bandpass", fs=rate_hz, output="sos")
            # 60 dB is a factor 1000 in amplitude: exp(-ln(1000) t / T)
            tail += sosfilt(sos, rng.standard_normal(n)) * np.exp(
                -np.log(1000.0) * t / (self.reverb_s * share))
        tail[:int(TAIL_START_S * rate_hz)] = 0.0
        tail *= np.sqrt(10 ** (-self.drr_db / 10) / np.sum(tail ** 2))
        tail[0] = 1.0
        tail.setflags(write=False)  # cached: shared by every call
        return tail

    def crowd(self, n: int, rate_hz: int, index: int = 0) -> np.ndarray:
        """``n`` samples of the crowd at unit RMS (clip ``index``'s own)."""
        rng = np.random.default_rng([self.seed, 1, index])
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum /= np.sqrt(np.maximum(1, np.arange(spectrum.size)))  # 1/f power: pink
        voices = np.fft.irfft(spectrum, n)
        steps = int(n / rate_hz * CROWD_LEVEL_RATE_HZ) + 2
        level = np.interp(np.arange(n), np.linspace(0, n, steps), 0.5 + rng.random(steps))
        out = voices * level
        clap = int(CLAP_S * rate_hz)
        shape = np.exp(-np.arange(clap) / (clap / 4))
        scale = 8 * float(np.std(out))
        for at in rng.integers(0, max(1, n - clap), rng.poisson(CLAPS_PER_S * n / rate_hz)):
            out[at:at + clap] += rng.standard_normal(clap)[:n - at] * shape[:n - at] * scale
        return out / max(1e-12, float(np.sqrt(np.mean(out ** 2))))

    def parts(self, signal: np.ndarray, rate_hz: int,
              index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The music at the microphone and the crowd there, each as long as ``signal``."""
        x = np.asarray(signal, dtype=np.float64).reshape(-1)
        music = fftconvolve(x, self.impulse_response(rate_hz))[:x.size] \
            if self.reverb_s else x.copy()
        crowd = np.zeros_like(music)
        if self.crowd_snr_db is not None and x.size:
            power = float(np.mean(music ** 2))
            crowd = self.crowd(x.size, rate_hz, index) * np.sqrt(
                power / 10 ** (self.crowd_snr_db / 10))
        return music, crowd

    def apply(self, signal: np.ndarray, rate_hz: int, index: int = 0) -> np.ndarray:
        """What the microphone hears of ``signal`` (mono), as float32 with the same peak
        as ``signal``: the music through the room, plus clip ``index``'s crowd."""
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        if self.dry:
            return x
        music, crowd = self.parts(x, rate_hz, index)
        mixed = music + crowd
        peak = float(np.max(np.abs(mixed), initial=0.0))
        if peak > 0:
            mixed *= float(np.max(np.abs(x), initial=0.0)) / peak
        return mixed.astype(np.float32)

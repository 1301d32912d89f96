"""The show's audio output: bit-exact samples, gapless follow-on buffers, heard positions.

``ShowOutput`` is ``AudioOutput`` with ``follow_clock=False`` (samples go out one per
frame, untouched: the lights follow the sound's clock, the sound is never stretched)
and two additions a player needs:

- ``play_next(audio)``: a buffer that starts on the frame after the current one's
  last sample. The callback that writes the last samples of one buffer writes the
  first samples of the next into the same output buffer, so there are 0 samples of
  silence between them; both are read with the same step, so the sum of the two
  renders is the concatenated signal.
- ``position_at(agent_us)``: the sample of the current buffer heard at an agent
  instant (the inverse of ``heard_us``, through the DacClock line, drift included).

It reaches into AudioOutput's program and DacClock (same package family, no copy of
the callback); ``program_number`` counts buffers that became current.
"""

from __future__ import annotations

import numpy as np

from gridcast.agent.audio import output as audio_output
from gridcast.agent.audio.output import AudioOutput, PreparedAudio


class ShowOutput(AudioOutput):
    """An AudioOutput for a player: bit-exact, gapless follow-ons, positions heard."""

    def __init__(self, device: int | str | None = None, **options: object) -> None:
        options["follow_clock"] = False
        super().__init__(device, **options)  # type: ignore[arg-type]
        self._following: audio_output._Program | None = None
        self.program_number = 0  # +1 each time a buffer becomes the current one

    def play(self, audio: np.ndarray | PreparedAudio, rate_hz: float | None = None,
             start_us: float | None = None) -> float:
        self._following = None
        start = super().play(audio, rate_hz, start_us)
        self.program_number += 1
        return start

    def stop_sound(self) -> None:
        self._following = None
        super().stop_sound()

    def play_next(self, audio: PreparedAudio) -> bool:
        """Queue ``audio`` to start on the frame after the current buffer's last sample.
        False when nothing is playing (then call ``play``)."""
        program = self._program
        if program is None or program.finished.is_set():
            return False
        start_us = program.start_us + program.length / program.rate_hz * 1e6
        self._following = audio_output._Program(audio.frames, start_us, self.rate_hz)
        return True

    @property
    def length(self) -> int:
        """Samples in the current buffer (0 when none)."""
        program = self._program
        return 0 if program is None else program.length

    @property
    def finished(self) -> bool:
        """The current buffer has been written out, and nothing follows it."""
        program = self._program
        return program is None or (program.finished.is_set() and self._following is None)

    def position_at(self, agent_us: float) -> float | None:
        """Sample (fractional, at the output rate) of the current buffer heard at
        ``agent_us``; negative before its start. None when nothing plays."""
        program = self._program
        if program is None:
            return None
        if program.frame_of_zero is None:
            return (agent_us - program.start_us) * self.rate_hz / 1e6
        return self._dac.frame_at(agent_us) - program.frame_of_zero

    def _render(self, program: audio_output._Program, outdata: np.ndarray,
                frames: int) -> None:
        super()._render(program, outdata, frames)
        following = self._following
        if (following is None or not program.finished.is_set() or program.position is None
                or program.frame_of_zero is None):
            return
        # This buffer began at read position (position - frames) of the finished program,
        # so at (that - length) of the next one: its sample 0 follows the last sample.
        start = program.position - frames - program.length
        tail = np.empty_like(outdata)  # once per track, not per callback
        audio_output._interpolate(following.frames, start, 1.0, tail)
        outdata += tail
        following.position = start + frames
        following.frame_of_zero = program.frame_of_zero + program.length
        self._following = None
        self._program = following
        self.program_number += 1
        if following.position >= following.length:
            following.finished.set()

"""Sound on the agent's clock: play audio so each sample is heard at a known agent time,
and a virtual room (a JACK dummy server plus a recorder) that proves when it was heard.

- room.VirtualRoom: a private ``jackd -d dummy`` for machines without a sound card.
- output.AudioOutput: PortAudio output whose samples land on the agent timeline.
- dac_clock.DacClock: when the frames an output writes are heard (agent µs), and drift.
- capture.RoomRecorder: what the room heard, and when (agent µs).
- clicks: click trains, their onsets in a recording, matched to a schedule.

See docs/audio.md for how it works and what was measured.
"""

"""gridcast.native: the real-time C beat tracker (native/src), bound with cffi."""

from gridcast.native.tracker import BeatEvent, Tracker, TrackerError, TrackResult, track_signal

__all__ = ["BeatEvent", "TrackResult", "Tracker", "TrackerError", "track_signal"]

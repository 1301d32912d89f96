"""The errors a user can hit when gridcast plays or records sound."""

from gridcast.protocol.errors import GridcastError


class AudioOutputError(GridcastError):
    """No usable output device, or no audio system running; the message lists what exists."""


class RoomError(GridcastError):
    """The virtual room (a JACK server with the dummy backend) could not start or be reached."""

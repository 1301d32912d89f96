"""Errors of DJ grid import and export."""

from gridcast.protocol.errors import GridcastError


class DjGridError(GridcastError):
    """A DJ library, analysis file or tag could not be read, matched or written."""

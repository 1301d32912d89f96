"""Errors shared by every part of gridcast, and the protocol's typed rejections.

This module runs on CPython and on MicroPython (it is copied to devices), so it
uses nothing but plain classes.
"""


class GridcastError(Exception):
    """Base of every error gridcast raises on purpose.

    ``str(err)`` is a complete one-line message for a user: what went wrong,
    where, and how to fix it when that is known.
    """


class ProtocolError(GridcastError):
    """Bytes that break the wire contract; ``code`` is a reason code (reasons.py)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return self.message

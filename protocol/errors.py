"""The one error base shared by every part of gridcast.

It lives in protocol/ because protocol is the bottom layer that every other part
(and the firmware) already imports; it depends on nothing.
"""


class GridcastError(Exception):
    """Base of every error gridcast raises on purpose.

    ``str(err)`` is a complete one-line message for a user: what went wrong,
    where, and how to fix it when that is known.
    """

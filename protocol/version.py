"""The one version number of gridcast: the Python package, the firmware and the C library.

pyproject.toml reads ``__version__`` from here, CMakeLists.txt parses it, and the
firmware reports ``FIRMWARE_VERSION`` (the same release as one integer, the
protocol's version form ``major << 16 | minor << 8 | patch``) in its hello and
status. The analyzer's version (``gridcast.host`` analysis) and the wire protocol's
(``messages.PROTOCOL_VERSION``) move on their own: they say what a beat map or a
message means, not which release made it. Runs on MicroPython too.
"""

__version__ = "0.5.0"


def version_to_int(text):
    """'1.2.3' -> 0x010203 (major, minor, patch each 0..255); ValueError naming the text."""
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("version must look like MAJOR.MINOR.PATCH, got %r" % text)
    value = 0
    for p in parts:
        n = int(p)
        if not 0 <= n <= 255:
            raise ValueError("version part %d is outside 0..255 in %r" % (n, text))
        value = (value << 8) | n
    return value


def version_text(value):
    """0x010203 -> '1.2.3'."""
    return "%d.%d.%d" % ((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)


FIRMWARE_VERSION = version_to_int(__version__)

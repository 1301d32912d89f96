"""A bundle file named on the command line (deploy, play): read whole and checked."""

from __future__ import annotations

import io

from gridcast.host.errors import BeatMapError
from gridcast.protocol import bundle_reader
from gridcast.protocol.errors import ProtocolError


def read(path: str) -> tuple[bytes, bundle_reader.BundleInfo]:
    """The file's bytes and header; BeatMapError naming the file when unreadable or invalid."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BeatMapError(f"{path}: cannot read bundle ({exc.strerror})") from exc
    try:
        info = bundle_reader.inspect(io.BytesIO(data), len(data))
    except ProtocolError as exc:
        raise BeatMapError(f"{path}: not a valid bundle: {exc}") from exc
    return data, info

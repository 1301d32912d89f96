"""Saving an imported map as the next version of the map at its path.

The same rule as ``gridcast analyze`` (host/library/batch.py): the new map is written
completely first, the previous file is kept as ``<name>.v<N>.json``, then the new one
takes the name; its history is the old history plus one entry. A map whose last import
was the same grid from the same audio is left alone ("unchanged").
"""

from __future__ import annotations

import json
import os

from gridcast.host.atomic_file import write_atomically
from gridcast.host.beatmaps import beatmap
from gridcast.host.beatmaps.beatmap import BeatMap
from gridcast.protocol.errors import GridcastError


def _existing(path: str) -> BeatMap | None:
    if not os.path.exists(path):
        return None
    try:
        return beatmap.load(path)
    except GridcastError:
        return None  # damaged or not a map: kept aside below, never overwritten


def _kept_path(path: str, version: int) -> str:
    root, ext = os.path.splitext(path)
    candidate, n = f"{root}.v{version}{ext}", 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{root}.v{version}-{n}{ext}"
    return candidate


def same_import(old: BeatMap, new: BeatMap) -> bool:
    """Whether ``old`` already is this import (same grid digest, same audio)."""
    a, b = old.metadata.get("grid_source"), new.metadata.get("grid_source")
    return (isinstance(a, dict) and isinstance(b, dict) and a.get("digest") == b.get("digest")
            and old.metadata.get("audio_sha256") == new.metadata.get("audio_sha256")
            and old.metadata.get("envelope_source") == new.metadata.get("envelope_source"))


def _encode(bm: BeatMap, fmt: str) -> bytes:
    """JSON without indentation (the same map, a third of the time to write: a 1,000-track
    collection is mostly this), msgpack as beatmap.encode writes it."""
    if fmt == "json":
        return (json.dumps(bm.to_dict(), separators=(",", ":")) + "\n").encode()
    return beatmap.encode(bm, fmt)


def sync_all() -> None:
    """Flush what a batch wrote with ``durable=False`` to the disk, once."""
    if hasattr(os, "sync"):
        os.sync()


def save_version(new: BeatMap, path: str, entry: dict, fmt: str | None = None,
                 durable: bool = True) -> str:
    """Save ``new`` at ``path`` as the next version; "written" or "unchanged"."""
    old = _existing(path)
    if old is not None and same_import(old, new):
        new.version, new.history = old.version, old.history
        return "unchanged"
    new.version = old.version + 1 if old is not None else 1
    new.history = [*(old.history if old is not None else []),
                   {"version": new.version, **entry}]
    staged = path + ".new"
    write_atomically(staged, _encode(new, fmt or beatmap.format_for(path)), durable=durable)
    try:
        if os.path.exists(path):
            os.replace(path, _kept_path(path, old.version if old is not None else 0))
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    return "written"

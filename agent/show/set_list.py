"""A set list entry: the track's audio (decoded on demand) and its lights (a bundle).

The agent never analyzes audio: the host (``gridcast play``) decodes, analyzes and
bundles, and hands the player ``ShowTrack``s. Audio is loaded only when the track is
about to play (``load``), so a long set list holds two tracks in memory, not all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gridcast.protocol.errors import GridcastError


class TrackUnplayable(GridcastError):
    """A set list track that cannot be decoded: the player skips it and goes on."""


@dataclass
class ShowTrack:
    """One track of a set list.

    ``load()`` returns (samples: frames or frames × channels, float; their rate in
    Hz) and raises (anything) when the audio cannot be decoded. ``beats_s`` are the
    bundle's beat times (map seconds), for the next-beat events and for choosing the
    instant the devices switch bundles.
    """

    title: str
    track_id: str
    bundle: bytes
    bundle_version: int
    beats_s: Sequence[float]
    load: Callable[[], tuple[np.ndarray, float]]

    def to_dict(self) -> dict:
        return {"title": self.title, "track_id": self.track_id,
                "bundle_version": self.bundle_version, "beats": len(self.beats_s)}

"""madmom's beat and downbeat trackers on a beat set: one folder of ``<clip id>.beats`` per
system, for bench/beat_timing.py ``--external`` (docs/live.md, "A reference: madmom") and
bench/downbeat_reference.py (docs/analysis.md).

madmom is not a gridcast dependency: it runs in a scratch virtual environment of its own
(madmom 0.16.1 is the last release; on Python 3.11 its pre-generated C files and one
``collections`` import need the two fixes below):

    python3 -m venv /tmp/madmom-venv
    /tmp/madmom-venv/bin/pip install "numpy==1.23.5" "cython<3" "scipy<1.12" soundfile soxr \
        setuptools wheel
    /tmp/madmom-venv/bin/pip download --no-deps --no-binary :all: madmom==0.16.1 -d /tmp/mm
    cd /tmp/mm && tar xzf madmom-0.16.1.tar.gz && cd madmom-0.16.1
    rm madmom/audio/comb_filters.c madmom/features/beats_crf.c madmom/ml/hmm.c \
        madmom/ml/nn/layers.c                       # Cython makes them again for 3.11
    sed -i 's/^from collections import MutableSequence/from collections.abc import \
MutableSequence/' madmom/processors.py
    /tmp/madmom-venv/bin/pip install --no-build-isolation .
    /tmp/madmom-venv/bin/python bench/external/madmom_beats.py SET_DIR OUT_DIR

The audio (any rate soundfile reads) is resampled to 44.1 kHz with soxr (HQ, no delay)
and given to madmom as a Signal; each system is what the madmom program of that name
computes with its defaults (checked beat for beat against the programs on one clip):
``dbn_offline`` DBNBeatTracker single, ``dbn_online`` DBNBeatTracker single --online
(a fresh state per clip), ``beattracker`` BeatTracker, ``beatdetector`` BeatDetector,
``crf`` CRFBeatDetector; with downbeats (``time<TAB>beat_in_bar`` lines):
``downbeat_34`` DBNDownBeatTracker (bars of 3 or 4 beats, its default) and
``downbeat_234`` the same with bars of 2, 3 or 4 beats.
"""

import glob
import os
import sys

import numpy as np
import soundfile as sf
import soxr
from madmom.audio.signal import Signal
from madmom.features.beats import (
    BeatDetectionProcessor,
    BeatTrackingProcessor,
    CRFBeatDetectionProcessor,
    DBNBeatTrackingProcessor,
    RNNBeatProcessor,
)
from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

RATE_HZ = 44100
AUDIO = (".flac", ".wav", ".ogg", ".mp3")


def main() -> None:
    set_dir, out = sys.argv[1], sys.argv[2]
    offline, online = RNNBeatProcessor(), RNNBeatProcessor(online=True, origin="online")
    bars = RNNDownBeatProcessor()
    for path in sorted(glob.glob(os.path.join(set_dir, "audio", "*"))):
        if not path.endswith(AUDIO):
            continue
        clip = os.path.splitext(os.path.basename(path))[0]
        x, rate = sf.read(path, dtype="float32")
        if x.ndim > 1:
            x = x.mean(axis=1)
        signal = Signal(soxr.resample(x, rate, RATE_HZ, quality="HQ").astype(np.float32),
                        sample_rate=RATE_HZ, num_channels=1)
        act = offline(signal)
        beats = {"dbn_offline": DBNBeatTrackingProcessor(fps=100)(act),
                 "beattracker": BeatTrackingProcessor(fps=100)(act),
                 "beatdetector": BeatDetectionProcessor(fps=100)(act),
                 "crf": CRFBeatDetectionProcessor(fps=100)(act),
                 "dbn_online": DBNBeatTrackingProcessor(fps=100, online=True)(online(signal))}
        bar_act = bars(signal)
        for meters in ((3, 4), (2, 3, 4)):
            name = "downbeat_" + "".join(map(str, meters))
            beats[name] = DBNDownBeatTrackingProcessor(beats_per_bar=list(meters),
                                                       fps=100)(bar_act)
        for system, times in beats.items():
            os.makedirs(os.path.join(out, system), exist_ok=True)
            rows = np.asarray(times).reshape(len(times), -1)
            np.savetxt(os.path.join(out, system, f"{clip}.beats"), rows,
                       fmt="%.4f" if rows.shape[1] == 1 else ("%.4f", "%d"), delimiter="\t")
        print(clip, {k: len(v) for k, v in beats.items()}, flush=True)


if __name__ == "__main__":
    main()

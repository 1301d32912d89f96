import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gridcast.host.analysis import audio
from gridcast.host.errors import AudioError


def test_probe_reads_format_rate_and_duration(demo_song):
    info = audio.probe(demo_song[0])
    assert info.sample_rate == 22050
    assert info.channels == 1
    assert info.duration_s == pytest.approx(12.0, abs=0.01)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: None, "no such file"),
    (lambda p: os.mkdir(p), "is a folder"),
    (lambda p: Path(p).write_bytes(b""), "empty file"),
    (lambda p: Path(p).write_text("this is not audio\n" * 50), "not a readable audio file"),
    (lambda p: sf.write(p, np.zeros(4000, np.float32), 8000), "too short (0.50 s)"),
])
def test_probe_rejects_bad_input_naming_the_file(tmp_path, make, expected):
    path = str(tmp_path / "input.wav")
    make(path)
    with pytest.raises(AudioError) as err:
        audio.probe(path)
    assert str(err.value).startswith(path + ": ")
    assert expected in str(err.value)


def test_probe_rejects_a_three_hour_file_before_decoding(tmp_path):
    path = str(tmp_path / "long.flac")
    with sf.SoundFile(path, "w", 8000, 1, format="FLAC") as f:
        block = np.zeros(8000 * 600, dtype=np.float32)
        for _ in range(18):  # 18 x 10 min of silence: FLAC keeps it tiny
            f.write(block)
    with pytest.raises(AudioError, match=r"too long \(3:00:00\); the limit is 1:00:00"):
        audio.probe(path)


def test_sample_rate_outside_range_is_rejected(tmp_path):
    path = str(tmp_path / "slow.wav")
    sf.write(path, np.zeros(6000 * 3, np.float32), 6000)
    with pytest.raises(AudioError, match="sample rate 6000 Hz is outside 8000-192000 Hz"):
        audio.probe(path)


def test_truncated_flac_fails_while_decoding_with_a_clear_message(tmp_path):
    path = str(tmp_path / "cut.flac")
    noise = np.random.default_rng(0).standard_normal(44100 * 5).astype(np.float32) * 0.1
    sf.write(path, noise, 44100)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    info = audio.probe(path)
    with pytest.raises(AudioError, match="truncated or corrupt"):
        list(audio.iter_mono_blocks(info))


def test_multichannel_is_averaged_to_mono(tmp_path):
    path = str(tmp_path / "stereo.wav")
    left = np.full(48000 * 3, 0.5, np.float32)
    sf.write(path, np.stack([left, -left * 0.5], axis=1), 48000)
    mono = audio.read_mono(audio.probe(path))
    assert mono.shape == (48000 * 3,)
    assert np.allclose(mono, 0.125, atol=1e-4)

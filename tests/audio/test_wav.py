"""Any WAV a customer uploads comes in as PCM16 mono; recordings go out as plain 16-bit WAV."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from parley.audio.wav import read_wav, write_wav

ToneFactory = Callable[..., np.ndarray]  # the `tone` and `noise` fixtures from conftest


def test_pcm16_mono_round_trip_is_exact(tmp_path: Path, noise: ToneFactory) -> None:
    pcm = noise(0.5, 16000, dbfs=-10)
    pcm[:2] = [32767, -32768]
    write_wav(tmp_path / "a.wav", pcm, 16000)
    frame = read_wav(tmp_path / "a.wav")
    assert frame.sample_rate == 16000 and frame.timestamp == 0.0
    assert np.array_equal(frame.pcm, pcm)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "PCM_16"


def test_stereo_pads_the_shorter_channel_and_reads_back_as_the_average(tmp_path: Path) -> None:
    left = np.full(100, 1000, dtype=np.int16)
    right = np.full(60, -400, dtype=np.int16)
    path = str(tmp_path / "s.wav")
    write_wav(path, (left, right), 8000)
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == 8000 and data.shape == (100, 2)
    assert (data[:, 0] == 1000).all() and (data[:60, 1] == -400).all() and (data[60:, 1] == 0).all()
    mono = read_wav(path).pcm
    assert (mono[:60] == 300).all() and (mono[60:] == 500).all()


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [("PCM_U8", 256), ("PCM_16", 0), ("PCM_24", 1), ("PCM_32", 1), ("FLOAT", 1), ("DOUBLE", 1)],
)
@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_any_sample_format_and_rate_reads_as_pcm16(
    tmp_path: Path, tone: ToneFactory, subtype: str, tolerance: int, rate: int
) -> None:
    pcm = tone(440, 0.2, rate, dbfs=-12)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, pcm.astype(np.float64) / 32768.0, rate, subtype=subtype, format="WAV")
    frame = read_wav(path)
    assert frame.sample_rate == rate and frame.num_samples == pcm.size
    assert np.abs(frame.pcm.astype(int) - pcm).max() <= tolerance


def test_multichannel_float_is_downmixed_and_clipped(tmp_path: Path) -> None:
    data = np.array([[0.5, 0.5, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0], [-0.25, 0.25, -0.25, 0.25]])
    path = tmp_path / "quad.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    assert read_wav(path).pcm.tolist() == [16384, 32767, 0]


def test_file_objects_work_both_ways(tone: ToneFactory) -> None:
    pcm = tone(300, 0.1, 16000)
    buf = io.BytesIO()
    write_wav(buf, pcm, 16000)
    buf.seek(0)
    assert np.array_equal(read_wav(buf).pcm, pcm)


def test_unreadable_files_raise_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match=r"cannot read audio from .*notes\.wav"):
        read_wav(garbage)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read audio"):
        read_wav(empty)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_wav(tmp_path / "missing.wav")


def test_write_rejects_what_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one \\(mono\\) or two"):
        write_wav(tmp_path / "x.wav", [np.zeros(2, np.int16)] * 3, 8000)
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "x.wav", np.zeros(4, np.float32), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "x.wav", np.zeros(4, np.int16), 0)

"""The stereo recording: both sides on one clock, written as the call runs, flushes cut from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from parley.audio.frame import AudioFrame
from parley.timeline import recorder as recorder_module
from parley.timeline.recorder import RecordingOutput, StereoRecorder, is_being_written

RATE = 16000


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tone(seconds: float, rate: int, start: float) -> AudioFrame:
    t = np.arange(int(seconds * rate)) / rate
    return AudioFrame((0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16), rate, start)


class Sink:
    sample_rate = RATE

    def __init__(self) -> None:
        self.frames: list[AudioFrame] = []
        self.cleared = 0

    async def write(self, frame: AudioFrame) -> None:
        self.frames.append(frame)

    async def clear(self) -> None:
        self.cleared += 1


def level(channel: np.ndarray, start_s: float, end_s: float) -> float:
    return float(np.abs(channel[int(start_s * RATE) : int(end_s * RATE)].astype(float)).mean())


async def test_both_sides_land_where_they_happened_and_flushed_audio_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1000.0)
    monkeypatch.setattr(recorder_module, "now", clock)
    path = tmp_path / "call.wav"
    recorder = StereoRecorder(path, RATE, origin=1000.0)
    sink = Sink()
    output = RecordingOutput(sink, recorder)
    user = tone(1.0, 8000, 1000.0)  # a phone line at 8 kHz: resampled into the recording
    for i in range(50):
        clock.t = 1000.0 + (i + 1) * 0.02
        recorder.user(AudioFrame(user.pcm[i * 160 : (i + 1) * 160], 8000, 1000.0 + i * 0.02))
    answer = tone(1.0, RATE, 1001.2)  # written ahead of its play time
    for i in range(50):
        await output.write(AudioFrame(answer.pcm[i * 320 : (i + 1) * 320], RATE, 1001.2 + i * 0.02))
    clock.t = 1001.5
    await output.clear()  # barge-in at 1.5 s: the rest of the answer was never heard
    assert sink.cleared == 1 and len(sink.frames) == 50
    clock.t = 1003.0
    recorder.user(AudioFrame(np.zeros(320, np.int16), RATE, 1002.98))
    info = recorder.finalize()

    stereo, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == RATE and stereo.shape[1] == 2
    assert info.duration_s == pytest.approx(3.0, abs=0.01) and info.size_bytes == path.stat().st_size
    left, right = stereo[:, 0], stereo[:, 1]
    assert level(left, 0.05, 0.95) > 3000 and level(left, 1.1, 2.9) < 10
    assert level(right, 0.0, 1.15) < 10
    assert level(right, 1.25, 1.45) > 3000, "the answer as heard"
    assert level(right, 1.55, 2.9) < 10, "what the flush discarded is not in the recording"


def test_the_file_is_playable_while_the_call_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(50.0)
    monkeypatch.setattr(recorder_module, "now", clock)
    path = tmp_path / "live.wav"
    recorder = StereoRecorder(path, RATE, origin=50.0, horizon_s=1.0)
    speech = tone(3.0, RATE, 50.0)
    for i in range(150):
        clock.t = 50.0 + (i + 1) * 0.02
        recorder.user(AudioFrame(speech.pcm[i * 320 : (i + 1) * 320], RATE, 50.0 + i * 0.02))
    assert is_being_written(path)
    partial, _ = sf.read(path, dtype="int16", always_2d=True)  # as a crash would leave it
    assert 1.7 * RATE <= len(partial) <= 2.0 * RATE, "all but the last second is on disk already"
    recorder.finalize()
    assert not is_being_written(path)
    assert len(sf.read(path, dtype="int16")[0]) == 3 * RATE


def test_a_killed_call_leaves_all_but_its_last_moments_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(70.0)
    monkeypatch.setattr(recorder_module, "now", clock)
    path = tmp_path / "killed.wav"
    recorder = StereoRecorder(path, RATE, origin=70.0)  # the recorder every live call gets
    voice = tone(3.0, RATE, 70.0)
    for i in range(150):  # three seconds, the agent talking; then the process dies: nothing more is written
        clock.t = 70.0 + (i + 1) * 0.02
        recorder.agent(AudioFrame(voice.pcm[i * 320 : (i + 1) * 320], RATE, 70.0 + i * 0.02))
        recorder.user(AudioFrame(np.zeros(320, np.int16), RATE, 70.0 + i * 0.02))
    partial, _ = sf.read(path, dtype="int16", always_2d=True)
    assert len(partial) > 2.0 * RATE, "a crash loses less than a second of the call"
    assert level(partial[:, 1], len(partial) / RATE - 0.1, len(partial) / RATE) > 1000, "the agent is on it"
    recorder.finalize()

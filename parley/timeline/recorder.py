"""The stereo call recording (user left, agent right), written to disk while the call runs.

Both sides are placed by their monotonic timestamps on one clock, so the recording shows exactly the
gaps and overlaps the engine measured. Agent frames are written ahead of their play time, so audio the
agent flushed on a barge-in (``clear``) is cut from the recording too: it keeps what was heard. Audio
older than ``horizon_s`` goes to the WAV file as the call runs, a quarter second at a time; the ``wave``
module rewrites the header after every write, so even a killed process leaves a playable file, short
of at most ``horizon_s`` + 0.25 s. The horizon is how late a caller's frame may still be placed: a
network frame is stamped at most ``InboundClock.max_drift_s`` (0.25 s) before its arrival less its own
length (``ws_max_frame_ms``, 0.25 s), hence 0.5 s, and the crash loses under a second.
"""

from __future__ import annotations

import fcntl
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from parley.audio.frame import AudioFrame
from parley.audio.resample import Resampler
from parley.engine.events import now
from parley.engine.transport import AudioOutput, ConfirmsPlayout

_MAX_AHEAD_S = 30.0
_CONTIGUOUS_S = 0.04


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    path: Path
    sample_rate: int
    duration_s: float
    size_bytes: int


class _Track:
    """One channel: a buffer starting at the first sample not yet written to the file."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.buffer: npt.NDArray[np.int32] = np.zeros(0, np.int32)
        self.cursor: int | None = None
        self._resampler: Resampler | None = None
        self._input_rate: int | None = None

    def place(self, frame: AudioFrame, position: int, base: int) -> None:
        """Add ``frame`` at sample ``position``; contiguous frames continue at the cursor seamlessly."""
        if frame.sample_rate != self._input_rate:
            self._input_rate = frame.sample_rate
            self._resampler = (
                Resampler(frame.sample_rate, self.rate) if frame.sample_rate != self.rate else None
            )
            self.cursor = None
        pcm = self._resampler.process(frame.pcm) if self._resampler else frame.pcm
        if self.cursor is None or abs(position - self.cursor) > _CONTIGUOUS_S * self.rate:
            self.cursor = position
        start = self.cursor - base
        self.cursor += len(pcm)
        if start < 0:
            pcm, start = pcm[-start:], 0
        end = start + len(pcm)
        if end > len(self.buffer):
            self.buffer = np.concatenate([self.buffer, np.zeros(end - len(self.buffer), np.int32)])
        self.buffer[start:end] += pcm

    def cut(self, offset: int) -> None:
        if offset < len(self.buffer):
            self.buffer[max(0, offset) :] = 0
        self.cursor = None

    def take(self, count: int) -> npt.NDArray[np.int32]:
        head = self.buffer[:count]
        if len(head) < count:
            head = np.concatenate([head, np.zeros(count - len(head), np.int32)])
        self.buffer = self.buffer[count:]
        return head


class StereoRecorder:
    def __init__(
        self, path: Path, sample_rate: int = 16000, *, origin: float | None = None, horizon_s: float = 0.5
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.origin = now() if origin is None else origin
        self._horizon = int(horizon_s * sample_rate)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Both stay open for the whole call; finalize() closes them.
        self._file = path.open("wb")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # "a live call is writing this"
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._written = 0
        self._user = _Track(sample_rate)
        self._agent = _Track(sample_rate)

    def _position(self, t: float) -> int:
        return round((t - self.origin) * self.sample_rate)

    def user(self, frame: AudioFrame) -> None:
        """Audio the caller sent (timestamped at capture)."""
        self._place(self._user, frame)

    def agent(self, frame: AudioFrame) -> None:
        """Audio the agent sent (timestamped with its play time)."""
        self._place(self._agent, frame)

    def cut_agent(self, at: float | None = None) -> None:
        """The peer dropped what it had buffered: agent audio from ``at`` on was never heard."""
        self._agent.cut(self._position(now() if at is None else at) - self._written)

    def _place(self, track: _Track, frame: AudioFrame) -> None:
        if self._wav is None or frame.num_samples == 0:
            return
        position = self._position(frame.timestamp)
        if position - self._position(now()) > _MAX_AHEAD_S * self.sample_rate:
            return
        track.place(frame, position, self._written)
        settled = self._position(now()) - self._horizon
        if settled - self._written >= self.sample_rate // 4:
            self._write(settled - self._written)

    def _write(self, count: int) -> None:
        if count <= 0 or self._wav is None:
            return
        stereo = np.empty((count, 2), np.int16)
        stereo[:, 0] = np.clip(self._user.take(count), -32768, 32767)
        stereo[:, 1] = np.clip(self._agent.take(count), -32768, 32767)
        self._wav.writeframes(stereo.astype("<i2").tobytes())
        self._written += count

    def finalize(self) -> RecordingInfo:
        """Write everything left and close the file (hang-up). Safe to call twice."""
        if self._wav is not None:
            self._write(max(len(self._user.buffer), len(self._agent.buffer)))
            self._wav.close()
            self._wav = None
            self._file.close()
        return RecordingInfo(
            self.path, self.sample_rate, self._written / self.sample_rate, self.path.stat().st_size
        )


def is_being_written(path: Path) -> bool:
    """Whether a live recorder (in any process) holds this file."""
    try:
        with path.open("rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False
    return False


class RecordingOutput:
    """An ``AudioOutput`` that records what it forwards, and honours ``clear`` in the recording too."""

    def __init__(self, inner: AudioOutput, recorder: StereoRecorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.sample_rate = inner.sample_rate

    async def write(self, frame: AudioFrame) -> None:
        self.recorder.agent(frame)
        await self.inner.write(frame)

    async def clear(self) -> None:
        self.recorder.cut_agent()
        await self.inner.clear()

    def heard_until(self, cut: float) -> float:
        return self.inner.heard_until(cut) if isinstance(self.inner, ConfirmsPlayout) else cut

"""The room's recording: every leg's own voice, and a mix of all of them, on the room clock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from parley.audio.frame import PCM16
from parley.audio.mixer import mix
from parley.audio.wav import write_wav
from parley.engine.events import EventType
from parley.rooms.model import ROOM_RATE, Emit

DEFAULT_MAX_SECONDS = 2 * 3600.0
_BLOCK = ROOM_RATE
"""Tracks grow in one-second blocks, so two hours is 7,200 arrays, not 360,000 frames."""


class _Track:
    """PCM16 placed by sample position; positions never written read as silence."""

    def __init__(self) -> None:
        self._blocks: list[PCM16 | None] = []

    def put(self, position: int, pcm: PCM16) -> None:
        offset = 0
        while offset < pcm.size:
            index, start = divmod(position + offset, _BLOCK)
            while len(self._blocks) <= index:
                self._blocks.append(None)
            block = self._blocks[index]
            if block is None:
                block = self._blocks[index] = np.zeros(_BLOCK, np.int16)
            take = min(_BLOCK - start, pcm.size - offset)
            block[start : start + take] = pcm[offset : offset + take]
            offset += take

    def samples(self, length: int) -> PCM16:
        out = np.zeros(length, np.int16)
        for index, block in enumerate(self._blocks):
            start = index * _BLOCK
            if block is not None and start < length:
                out[start : min(length, start + _BLOCK)] = block[: length - start]
        return out


class RoomRecording:
    """Each leg's inbound audio (what that participant said) and the mix of all of it.

    Every track starts at the room's first tick: a leg that joins late (or leaves early) is silence
    where it was absent, so all files have the same length and line up sample for sample. The mix is
    what an observer who hears everyone would hear: whispers included, though the customer never heard
    them (``audible`` decides what each listener got; the recording keeps what was said).

    Recording stops at ``max_seconds`` (two hours by default: 230 MB per track at 16 kHz, held in
    memory until ``write``) with one ``error`` event; the call itself goes on.
    """

    def __init__(self, *, max_seconds: float = DEFAULT_MAX_SECONDS, emit: Emit | None = None) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_samples = int(max_seconds * ROOM_RATE)
        self._emit = emit
        self._legs: dict[str, _Track] = {}
        self._mix = _Track()
        self._length = 0
        self.truncated = False
        """True once the maximum duration was reached and recording stopped."""

    @property
    def duration_s(self) -> float:
        return self._length / ROOM_RATE

    @property
    def participant_ids(self) -> list[str]:
        return list(self._legs)

    def add(self, position: int, frames: Mapping[str, PCM16], length: int) -> None:
        """Record ``length`` samples from ``position`` on the room clock: ``frames`` maps participant ids
        to what each said then (a tick with nobody in the room is recorded as silence)."""
        end = position + length
        if self.truncated:
            return
        if end > self.max_samples:
            self.truncated = True
            if self._emit is not None:
                self._emit(
                    EventType.ERROR,
                    where="room.recording",
                    error="max_duration",
                    max_seconds=self.max_samples / ROOM_RATE,
                )
            return
        for participant_id, pcm in frames.items():
            track = self._legs.get(participant_id)
            if track is None:
                track = self._legs[participant_id] = _Track()
            track.put(position, pcm)
        if frames:
            self._mix.put(position, mix(list(frames.values()), length))
        self._length = max(self._length, end)

    def leg(self, participant_id: str) -> PCM16:
        """One participant's track, the full length of the recording."""
        return self._legs[participant_id].samples(self._length)

    def mix(self) -> PCM16:
        return self._mix.samples(self._length)

    def write(self, directory: Path) -> dict[str, Path]:
        """Writes ``mix.wav`` and ``leg-<participant_id>.wav`` (16 kHz mono PCM16); keys are the stems."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"mix": directory / "mix.wav"}
        write_wav(paths["mix"], self.mix(), ROOM_RATE)
        for participant_id in self._legs:
            path = directory / f"leg-{participant_id}.wav"
            write_wav(path, self.leg(participant_id), ROOM_RATE)
            paths[f"leg-{participant_id}"] = path
        return paths

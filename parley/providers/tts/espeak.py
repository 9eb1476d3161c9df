"""The fallback voice: the ``espeak-ng`` program, streamed as it speaks.

Robotic but tiny, instant and GPL-free at the Python level (it runs as a separate program). It needs the
Debian/Ubuntu package ``espeak-ng`` (``apt-get install espeak-ng``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncGenerator

import numpy as np

from parley.audio.frame import PCM16

ESPEAK_SAMPLE_RATE = 22_050
_CHUNK_BYTES = 4410  # 100 ms of PCM16 at 22.05 kHz
_INSTALL_HINT = "install it with: apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)"


class EspeakNotFoundError(RuntimeError):
    """The espeak-ng program is not on PATH."""


class EspeakSynthesizer:
    """Runs ``espeak-ng --stdout`` per text and yields its PCM as it arrives."""

    name = "espeak"
    sample_rate = ESPEAK_SAMPLE_RATE

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175, *, program: str = "espeak-ng") -> None:
        found = shutil.which(program)
        if found is None:
            raise EspeakNotFoundError(f"The {program!r} program was not found; {_INSTALL_HINT}")
        self.program = found
        self.voice = voice
        self.rate_wpm = rate_wpm

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        if not text.strip():
            return
        process = await asyncio.create_subprocess_exec(
            self.program,
            "--stdout",
            "--stdin",  # text on stdin, so text starting with "-" is never taken for an option
            "-b", "1",  # UTF-8 input
            "-z",  # no trailing sentence pause: the speak loop joins clauses itself
            "-v", self.voice,
            "-s", str(self.rate_wpm),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(text.encode("utf-8"))
            await process.stdin.drain()
            process.stdin.close()
            await _read_wav_header(process.stdout)
            leftover = b""
            while block := await process.stdout.read(_CHUNK_BYTES):
                data = leftover + block
                usable = len(data) - len(data) % 2
                leftover = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
            if await process.wait() != 0:
                stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"espeak-ng failed with exit code {process.returncode}: {stderr}")
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.shield(process.wait())

    async def warm_up(self) -> None:
        """Run once so the program and its voice data are in the page cache."""
        async for _ in self.synthesize("ok"):
            pass


async def _read_wav_header(stream: asyncio.StreamReader) -> None:
    """Consume the RIFF header up to the sample data, checking it is mono PCM16 at our rate.

    When writing to a pipe espeak-ng cannot know the length, so it puts a placeholder size in the
    ``data`` chunk; everything after that chunk's header is samples until the pipe closes.
    """
    riff = await stream.readexactly(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not write a WAV stream")
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            return
        body = await stream.readexactly(size + (size & 1))
        if chunk_id == b"fmt ":
            audio_format, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if (audio_format, channels, rate, bits) != (1, 1, ESPEAK_SAMPLE_RATE, 16):
                raise RuntimeError(
                    f"espeak-ng wrote format={audio_format} channels={channels} rate={rate} bits={bits}; "
                    f"expected PCM16 mono at {ESPEAK_SAMPLE_RATE} Hz"
                )

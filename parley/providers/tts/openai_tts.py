"""OpenAI speech synthesis (``POST /v1/audio/speech``) through the official ``openai`` SDK, streamed.

``client.audio.speech.with_streaming_response.create(..., response_format="pcm")`` hands over the body as
it arrives: raw 24 kHz 16-bit little-endian mono, played while the rest is still being generated. Any
OpenAI-compatible server that implements the route works (the base URL is the operator's
``PARLEY_OPENAI_BASE_URL``, shared with the language model). The endpoint gives no timing of words, so a
cut clause is cut in proportion to its length, as for the embedded voices.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2  # the SDK's HTTP client: a body cut off mid-stream raises its errors, not the SDK's
import numpy as np
import openai
from openai import AsyncOpenAI

from parley.audio.frame import PCM16
from parley.providers.openai_audio import provider_error

PROVIDER = "openai"
SAMPLE_RATE = 24_000
"""What ``response_format="pcm"`` is: 24 kHz, 16-bit signed, little-endian, mono."""
MAX_INPUT_CHARS = 4096
"""The endpoint's limit on ``input``; a clause is far shorter, but a long one must not be refused."""


class OpenAISynthesizer:
    """One OpenAI voice (model, voice, speed, style instructions), shared by the sessions that use it."""

    name = PROVIDER
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        voice: str,
        *,
        speed: float | None = None,
        instructions: str | None = None,
        chunk_bytes: int = 4800,
    ) -> None:
        """``chunk_bytes`` (default 100 ms) is how much audio the engine gets at a time."""
        self._client = client
        self.model = model
        self.voice = voice
        self.speed = speed
        self.instructions = instructions
        self.chunk_bytes = chunk_bytes

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        text = text.strip()[:MAX_INPUT_CHARS]
        if not text:
            return
        odd = b""
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.model,
                voice=self.voice,
                input=text,
                response_format="pcm",
                speed=self.speed if self.speed is not None else openai.omit,
                instructions=self.instructions or openai.omit,
            ) as response:
                async for data in response.iter_bytes(self.chunk_bytes):
                    data = odd + data
                    usable = len(data) // 2 * 2
                    odd = data[usable:]
                    if usable:
                        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise provider_error(exc, PROVIDER, "OpenAI speech", self._client.api_key) from exc

    async def warm_up(self) -> None:
        """Nothing to load; the phrase cache's greeting is the first request."""
        return None

"""faster-whisper tiny.en on speech synthesized by Piper: what a caller would hear back as text."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from parley.audio.frame import PCM16
from parley.bench.voice import CallerVoice
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.asr.whisper import WhisperRecognizer, WhisperStream
from parley.providers.tts.piper import PiperSynthesizer
from tests.helpers.waiting import until

pytestmark = pytest.mark.models

BOOKING = "Could you book a table for tomorrow evening, next to the window?"
THANKS = "Thank you very much."


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


async def speak(piper: PiperSynthesizer, text: str) -> PCM16:
    chunks = [chunk async for chunk in piper.synthesize(text)]
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    at_16k = soxr.resample(audio, piper.sample_rate, 16_000)
    pause = np.zeros(3200, dtype=np.float32)  # 200 ms either side, as an endpointer would leave
    return (np.concatenate([pause, at_16k, pause]) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def speech() -> dict[str, PCM16]:
    async def make() -> dict[str, PCM16]:
        piper = PiperSynthesizer()
        try:
            return {text: await speak(piper, text) for text in (BOOKING, THANKS, "Okay.")}
        finally:
            piper.close()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperRecognizer]:
    recognizer = WhisperRecognizer()
    yield recognizer
    recognizer.close()


async def test_final_transcript_has_the_key_words(
    whisper: WhisperRecognizer, speech: dict[str, PCM16]
) -> None:
    stream = whisper.open_stream()
    audio = speech[BOOKING]
    for start in range(0, audio.size, 320):  # 20 ms frames, as a transport delivers them
        await stream.push(audio[start : start + 320])
    final = await stream.finalize()
    heard = words(final.text)
    assert {"book", "table", "tomorrow", "window"} <= set(heard), final.text
    assert final.is_final
    assert final.audio_seconds == pytest.approx(audio.size / 16_000)
    assert 0.5 < final.confidence <= 1.0


async def test_interim_on_part_of_the_audio_is_the_start_of_the_sentence(
    whisper: WhisperRecognizer, speech: dict[str, PCM16]
) -> None:
    stream = whisper.open_stream()
    audio = speech[BOOKING]
    await stream.push(audio[: int(audio.size * 0.5)])
    interim = await stream.interim()
    guess = words(interim.text)
    assert not interim.is_final
    # Heard on every take and CPU code path tried (generic, AVX2, AVX-512): "Could you book a table for
    # tomorrow?". Asked of it: words of the sentence's first half, none of the second's.
    assert len({"could", "you", "book", "table"} & set(guess)) >= 3, interim.text
    assert "window" not in guess
    assert interim.audio_seconds == pytest.approx(audio.size * 0.5 / 16_000, abs=1e-3)
    # Nothing new pushed: the same guess comes back without transcribing again.
    assert await stream.interim() is interim


async def test_finalize_starts_a_new_utterance(whisper: WhisperRecognizer, speech: dict[str, PCM16]) -> None:
    stream = whisper.open_stream()
    await stream.push(speech[BOOKING])
    await stream.finalize()
    empty = await stream.finalize()
    assert (empty.text, empty.audio_seconds) == ("", 0.0)
    await stream.push(speech[THANKS])
    second = await stream.finalize()
    assert words(second.text)[:2] == ["thank", "you"], second.text
    assert "table" not in words(second.text)


async def test_a_short_word_is_not_repeated(whisper: WhisperRecognizer, speech: dict[str, PCM16]) -> None:
    """A short window makes Whisper loop ("Okay. Okay. Okay."); the recognizer must catch that."""
    stream = whisper.open_stream()
    await stream.push(speech["Okay."])
    heard = words((await stream.finalize()).text)
    assert heard and {"okay", "ok"} & set(heard), heard
    assert len(heard) == len(set(heard)) <= 2, f"a word came back repeated: {heard}"


async def test_silence_is_not_hallucinated_into_words(whisper: WhisperRecognizer) -> None:
    stream = whisper.open_stream()
    noise = np.random.default_rng(7).normal(0, 30, 16_000).astype(np.int16)
    await stream.push(noise)
    assert (await stream.finalize()).text == ""


async def test_an_interim_already_running_is_not_queued_twice(
    whisper: WhisperRecognizer, speech: dict[str, PCM16]
) -> None:
    stream = whisper.open_stream()
    await stream.push(speech[BOOKING])
    first = asyncio.create_task(stream.interim())
    await asyncio.sleep(0)  # the first guess is now being computed
    second = await stream.interim()
    assert not first.done()  # the second call did not wait for the model
    assert second.text == ""  # it returned the previous guess: there was none yet
    assert "book" in words((await first).text)


async def passes_over(
    whisper: WhisperRecognizer, stream: WhisperStream, audio: PCM16, heard: int
) -> tuple[str, int]:
    """Start an interim on the first ``heard`` samples, push the rest while it runs, then finalize:
    the final's text and how many times the model ran."""
    runs = 0
    transcribe = whisper._transcribe_sync

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal runs
        runs += 1
        return transcribe(*args, **kwargs)

    whisper._transcribe_sync = counted  # type: ignore[method-assign]
    try:
        await stream.push(audio[:heard])
        interim = asyncio.create_task(stream.interim())
        await until(lambda: stream._interim_job is not None and stream._interim_job.started)
        await stream.push(audio[heard:])
        final = await stream.finalize()
        await interim
    finally:
        del whisper._transcribe_sync
    return final.text, runs


async def test_an_interim_that_heard_all_the_speech_is_the_final(
    whisper: WhisperRecognizer, speech: dict[str, PCM16]
) -> None:
    # The pause that ends a turn is detected a moment after the last word: an interim begun then heard
    # every word, and the caller should not wait for the same words to be decoded twice.
    audio = speech[BOOKING]
    text, runs = await passes_over(whisper, whisper.open_stream(), audio, len(audio) - 1600)
    assert runs == 1
    assert {"book", "table", "tomorrow", "window"} <= set(words(text))


async def test_an_interim_that_missed_words_is_not_the_final(
    whisper: WhisperRecognizer, speech: dict[str, PCM16]
) -> None:
    audio = speech[BOOKING]
    text, runs = await passes_over(whisper, whisper.open_stream(), audio, len(audio) // 2)
    assert runs == 2
    assert "window" in words(text)


def test_the_operators_model_dir_stands_in_for_the_default_model(tmp_path: Path) -> None:
    import parley.stack  # noqa: F401  (registers the built-in providers)
    from parley.config import Settings
    from parley.providers.assets import whisper_base_dir
    from parley.providers.options import WhisperOptions
    from parley.providers.registry import BuildRequest, provider

    (tmp_path / "model.bin").write_bytes(b"")
    entry = provider("asr", "whisper")
    operator = Settings(whisper_model_dir=tmp_path)

    def built(options: WhisperOptions, host: Settings) -> Path:
        recognizer = entry.factory(BuildRequest(options, host, {}))
        assert isinstance(recognizer, WhisperRecognizer)
        return recognizer.model_dir

    assert built(WhisperOptions(), operator) == tmp_path
    assert built(WhisperOptions(), Settings()) == whisper_base_dir(), "without one: the packaged base"
    assert built(WhisperOptions(model="base"), operator) == whisper_base_dir(), "an agent's own choice"
    assert built(WhisperOptions(model="tiny.en"), operator) == tmp_path


async def test_streams_share_the_recognizer(whisper: WhisperRecognizer, speech: dict[str, PCM16]) -> None:
    a, b = whisper.open_stream(), whisper.open_stream()
    await a.push(speech[BOOKING])
    await b.push(speech[THANKS])
    final_a, final_b = await asyncio.gather(a.finalize(), b.finalize())
    assert "table" in words(final_a.text) and "thank" in words(final_b.text)


async def test_warm_up_loads_the_model(whisper: WhisperRecognizer) -> None:
    await asyncio.wait_for(whisper.warm_up(), timeout=20)


def test_a_missing_model_directory_fails_without_reaching_for_a_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no model\.bin"):
        WhisperRecognizer(model_dir=tmp_path / "tiny.en")


def test_satisfies_the_protocol(whisper: WhisperRecognizer) -> None:
    recognizer: SpeechRecognizer = whisper
    assert recognizer.sample_rate == 16_000


async def test_a_streams_vocabulary_spells_the_names_it_names(whisper: WhisperRecognizer) -> None:
    said = CallerVoice(varied=False).say(
        "HubSpot quoted us a lot less last month."
    )  # the same take every run
    audio = soxr.resample(said.pcm, said.sample_rate, 16_000).astype(np.int16)
    plain = whisper.open_stream()
    await plain.push(audio)
    unbiased = words((await plain.finalize()).text)
    assert "hubspot" not in unbiased, "this name must be one the model misspells on its own"
    stream = whisper.open_stream(["HubSpot", "Salesforce"])
    await stream.push(audio)
    heard = (await stream.finalize()).text
    assert "hubspot" in words(heard), heard


def test_a_decoding_that_says_a_phrase_twice_is_done_again_with_the_whole_window() -> None:
    from parley.providers.asr.whisper import _repetitive

    # Whisper tiny on a 10.6 s turn of real speech, in a 12.6 s window (the full window heard it once).
    assert _repetitive("Press 7 to undelete this message. Press 0 for help. Press 0 for help.")
    assert _repetitive("No? No? No?")
    assert not _repetitive("No, no, I said Tuesday at ten, not Thursday at ten.")
    assert not _repetitive("I think, I think we should book it for the morning.")

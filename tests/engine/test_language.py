"""An agent's language: its recogniser, voice and instructions follow it, set or detected on the first turn.

Fast and deterministic: scripted recogniser (reporting a language as a detecting one would), scripted
model, tone voices. The real models in Spanish and German: ``test_language_models.py``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig, TtsSettings
from parley.engine.events import EventType
from parley.engine.language import language_note, recognizer_settings, voice_name, voice_settings
from parley.engine.options import Voice
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from parley.simulate import UserTurn
from tests.engine.harness import RATE, agent, converse, speech, stack


def test_an_english_agent_is_left_as_it_was() -> None:
    config = AgentConfig()
    assert recognizer_settings(config) == config.asr
    assert voice_settings(config, "en") == config.tts
    assert language_note("en") == "" and language_note("auto") == ""


def test_a_spanish_agent_hears_with_multilingual_whisper_and_speaks_with_a_spanish_voice() -> None:
    config = AgentConfig(language="es")
    asr = recognizer_settings(config)
    assert (asr.provider, asr.options["model"], asr.options["language"]) == ("whisper", "base", "es")
    tts = voice_settings(config, "es")
    assert (tts.provider, tts.options) == ("espeak", {"voice": "es"}), "Piper's packaged voice is English"
    assert voice_name(tts) == "espeak:es"
    assert "Always answer in Spanish (español)" in language_note("es")


def test_a_piper_voice_the_operator_installed_is_preferred_to_espeak() -> None:
    tts = voice_settings(AgentConfig(language="de"), "de", piper_languages={"de"})
    assert (tts.provider, tts.options) == ("piper", {"language": "de"})


def test_an_auto_agent_detects_among_its_languages() -> None:
    config = AgentConfig(language="auto", languages=["en", "es", "de"])
    options = recognizer_settings(config).options
    assert options["model"] == "base" and options["language"] is None
    assert options["languages"] == ["en", "es", "de"]


def test_the_agents_own_voice_is_kept_where_it_speaks_the_language() -> None:
    latin = AgentConfig(language="es", tts={"provider": "espeak", "options": {"voice": "es-419"}})
    assert voice_settings(latin, "es") == latin.tts
    aura = AgentConfig(language="es", tts={"provider": "deepgram", "options": {"model": "aura-2-celeste-es"}})
    assert voice_settings(aura, "es") == aura.tts
    english_aura = AgentConfig(language="es", tts={"provider": "deepgram"})  # aura-2-thalia-en
    assert voice_settings(english_aura, "es").provider == "espeak"
    chosen = TtsSettings(provider="espeak", options={"voice": "de+f3"})
    assert voice_settings(AgentConfig(language="de", voices={"de": chosen}), "de") == chosen


def test_cloud_recognisers_get_their_language_option() -> None:
    deepgram = AgentConfig(language="de", asr={"provider": "deepgram"})
    assert recognizer_settings(deepgram).options["language"] == "de"
    detecting = AgentConfig(language="auto", asr={"provider": "deepgram"})
    assert recognizer_settings(detecting).options["language"] == "multi"
    openai = AgentConfig(language="auto", asr={"provider": "openai"})
    assert recognizer_settings(openai).options["language"] is None, "null lets the model detect it"


def test_an_unknown_language_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown language 'xx'.*es, de"):
        AgentConfig(language="xx")
    with pytest.raises(ValidationError, match="unknown language 'klingon'"):
        AgentConfig(language="auto", languages=["es", "klingon"])


async def test_a_spanish_call_tells_the_model_to_answer_in_spanish() -> None:
    engines = stack(["¿A qué hora abren?"], [ScriptRule.say("hora", "Abrimos a las nueve.")])
    config = agent(language="es")
    _, result = await converse(config, engines, [UserTurn(speech(1.0))])
    started = next(e for e in result.events if e.type is EventType.SESSION_STARTED)
    assert started.data["language"] == "es"
    assert isinstance(engines.llm, ScriptedModel)
    system = engines.llm.calls[-1][0].content
    assert system.endswith(language_note("es")), "said last, where a small model heeds it"
    assert result.turns[0].agent_text == "Abrimos a las nueve."


async def test_an_auto_call_switches_voice_instructions_and_recogniser_on_the_first_turn() -> None:
    english = ToneSynthesizer(sample_rate=RATE, ms_per_char=20.0)
    german = ToneSynthesizer(sample_rate=RATE, ms_per_char=20.0, frequency=330.0)
    built: list[str] = []

    def voices(language: str) -> Voice:
        built.append(language)
        return Voice(f"tone:{language}", german)

    engines = stack(
        ["Guten Tag, wann öffnen Sie?", "Danke schön."],
        [ScriptRule.say("öffnen", "Wir öffnen um neun Uhr."), ScriptRule.say("Danke", "Gern geschehen.")],
    )
    recognizer = ScriptedRecognizer(["Guten Tag, wann öffnen Sie?", "Danke schön."], language="de")
    engines.recognizer, engines.tts, engines.voices = recognizer, english, voices
    config = agent(language="auto", languages=["en", "de"], first_message="Hello!")
    conversation, result = await converse(config, engines, [UserTurn(speech(1.0)), UserTurn(speech(0.8))])

    detected = [e for e in result.events if e.type is EventType.LANGUAGE_DETECTED]
    assert [(e.data["language"], e.data["voice"]) for e in detected] == [("de", "tone:de")], "once"
    assert built == ["de"]
    assert english.texts == ["Hello!"], "the greeting, before anything was heard"
    assert german.texts == ["Wir öffnen um neun Uhr.", "Gern geschehen."]
    assert conversation.session.context.language_note == language_note("de")
    assert recognizer.pinned and set(recognizer.pinned) == {"de"}, "later turns are heard in German"
    assert isinstance(engines.llm, ScriptedModel)
    assert engines.llm.calls[-1][0].content.endswith(language_note("de"))


async def test_without_a_voice_for_the_language_the_call_goes_on_in_the_agents_voice() -> None:
    english = ToneSynthesizer(sample_rate=RATE, ms_per_char=20.0)

    def voices(language: str) -> Voice:
        raise RuntimeError(f"no voice installed for {language}")

    engines = stack(["Bonjour"], [ScriptRule.say("Bonjour", "Bonjour !")])
    engines.recognizer = ScriptedRecognizer(["Bonjour"], language="fr")
    engines.tts, engines.voices = english, voices
    _, result = await converse(agent(language="auto"), engines, [UserTurn(speech(0.8))])
    errors = [
        e for e in result.events if e.type is EventType.ERROR and e.data.get("where") == "language.voice"
    ]
    assert errors and "no voice installed for fr" in errors[0].data["error"]
    detected = next(e for e in result.events if e.type is EventType.LANGUAGE_DETECTED)
    assert detected.data["language"] == "fr"
    assert english.texts == ["Bonjour !"]

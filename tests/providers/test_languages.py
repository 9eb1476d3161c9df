"""The language table: every language has a voice that really speaks, and voices know their language."""

from __future__ import annotations

import numpy as np
import pytest

from parley.providers.languages import LANGUAGES, instruction, speaks, voice_for
from parley.providers.tts.espeak import EspeakSynthesizer


@pytest.mark.parametrize("code", sorted(LANGUAGES))
async def test_every_language_has_an_espeak_voice_that_speaks(code: str) -> None:
    voice = EspeakSynthesizer(LANGUAGES[code].espeak_voice)
    audio = np.concatenate([chunk async for chunk in voice.synthesize("123")])
    assert audio.size > voice.sample_rate // 10, "a tenth of a second of digits at least"
    assert np.abs(audio).max() > 1000, "not silence"


def test_piper_where_a_voice_is_installed_else_espeak() -> None:
    assert voice_for("en") == ("piper", {}), "the packaged Piper voice is English"
    assert voice_for("es") == ("espeak", {"voice": "es"})
    assert voice_for("es", piper_languages={"es"}) == ("piper", {"language": "es"})
    assert voice_for("zh") == ("espeak", {"voice": "cmn"})
    with pytest.raises(KeyError, match="xx"):
        voice_for("xx")


@pytest.mark.parametrize(
    ("provider", "options", "language", "expected"),
    [
        ("piper", {}, "en", True),
        ("piper", {}, "es", False),
        ("piper", {"language": "de"}, "de", True),
        ("espeak", {"voice": "es-419"}, "es", True),
        ("espeak", {"voice": "de+f3"}, "de", True),
        ("espeak", {"voice": "cmn"}, "zh", True),
        ("espeak", {}, "es", False),
        ("deepgram", {"model": "aura-2-celeste-es"}, "es", True),
        ("deepgram", {"model": "aura-2-thalia-en"}, "es", False),
        ("elevenlabs", {"model": "eleven_multilingual_v2"}, "de", True),
        ("elevenlabs", {"model": "eleven_flash_v2_5"}, "de", True),
        ("elevenlabs", {"model": "eleven_flash_v2"}, "de", False),
        ("openai", {"model": "gpt-4o-mini-tts"}, "es", True),
    ],
)
def test_a_voice_knows_whether_it_speaks_a_language(
    provider: str, options: dict[str, str], language: str, expected: bool
) -> None:
    assert speaks(provider, options, language) is expected


def test_the_instruction_names_the_language_both_ways() -> None:
    assert "Always answer in German (Deutsch)" in instruction("de")
    assert "Always answer in English," in instruction("en")

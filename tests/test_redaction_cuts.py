"""An error text cut short before its credentials were redacted (a server that truncates its own
answer, a provider adapter that cuts a body to an excerpt) never shows the start of a credential."""

from __future__ import annotations

import pytest

from parley.providers.errors import ProviderUnavailable
from parley.redaction import REDACTED, without_secrets

KEY = "sk-TOPSECRETKEY-123456"


def pieces(secret: str, size: int = 4) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.mark.parametrize(
    "quoted",
    [
        f"upstream refused Authorization: Bearer {KEY} for this model",
        f'{{"headers": {{"xi-api-key": "{KEY}", "accept": "*/*"}}}}',
        f"echo Token {KEY} end",
        f"invalid key {KEY} given",
    ],
)
def test_a_credential_cut_anywhere_shows_none_of_its_characters(quoted: str) -> None:
    start = quoted.index(KEY)
    for cut in range(start, start + len(KEY) + 1):
        said = str(ProviderUnavailable(f"chat request failed (HTTP 401): {quoted[:cut]}", provider="x"))
        shown = said.removeprefix("chat request failed (HTTP 401): ")
        assert not any(piece in shown for piece in pieces(KEY[3:])), (cut, said)


def test_ordinary_endings_stay() -> None:
    for text in ("the token is short", "refresh the access token", "max_tokens exceeded", "Bearer"):
        assert without_secrets(text) == text
    assert without_secrets("the header Authorization: Bea") == f"the header Authorization: {REDACTED}"

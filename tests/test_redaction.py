"""Credentials quoted in an error never travel on: not to a timeline, a log, a webhook or a caller."""

from __future__ import annotations

import pytest

from parley.engine.events import Event, EventType
from parley.providers.errors import ProviderUnavailable
from parley.redaction import REDACTED, without_secrets
from parley.transports.ws_protocol import messages_for


@pytest.mark.parametrize(
    "quoted",
    [
        '{"message": "boom internal Bearer sk-TOPSECRETKEY-123456"}',  # a server echoing Authorization
        "echo Token dg-TOPSECRET-999888777",  # Deepgram's dg-error, echoed
        '{"headers": {"xi-api-key": "el-TOPSECRET-abcdef"}}',  # an ElevenLabs handshake body
        "invalid key sk-proj-abcdefghijklmnop",
    ],
)
def test_a_provider_error_never_carries_the_credentials_its_server_quoted(quoted: str) -> None:
    error = ProviderUnavailable(f"chat request failed (HTTP 500): {quoted}", provider="openai")
    assert "TOPSECRET" not in str(error) and "abcdefghijklmnop" not in str(error)
    assert REDACTED in str(error) and "HTTP 500" in str(error), "the rest of the reason stays"


def test_known_values_go_whatever_their_shape_and_ordinary_words_stay() -> None:
    said = without_secrets("the header was hunter2-value and the token is short", ["hunter2-value", "abc"])
    assert said == f"the header was {REDACTED} and the token is short"


def test_a_client_learns_which_stage_failed_not_the_providers_words() -> None:
    failed = Event(
        EventType.ERROR,
        "s1",
        data={"where": "tts", "stage": "tts", "error": "HTTP 500 from http://10.0.0.7:8812/v1/tts"},
    )
    [message] = messages_for(failed)
    assert message["code"] == "engine" and message["message"] == "speech synthesis failed"
    assert "10.0.0.7" not in str(message)

"""A live ``start``'s ``audio.channels`` is the JSON integer 1, strict like its ``sample_rate``: ``true``
(which Python takes for 1), ``1.0`` or ``"1"`` is a client bug, answered with the protocol's
``invalid_message`` error naming the field, and no session is started on a guess."""

from __future__ import annotations

import pytest

from parley.transports.ws_protocol import ErrorCode, ProtocolError, parse_client_message
from tests.server.conftest import fast_engines, serving


@pytest.mark.parametrize(
    ("channels", "says"),
    [
        ("true", "not true/false"),
        ("1.0", "not a number with a decimal point"),
        ('"1"', "not a string"),
        ("2", "Input should be 1"),
    ],
)
def test_channels_is_not_coerced(channels: str, says: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_message('{"type": "start", "audio": {"channels": ' + channels + "}}")
    assert refused.value.code is ErrorCode.INVALID_MESSAGE
    assert "audio.channels" in refused.value.message and says in refused.value.message


def test_mono_as_an_integer_is_taken() -> None:
    start = parse_client_message('{"type": "start", "audio": {"sample_rate": 16000, "channels": 1}}')
    assert start.type == "start" and start.audio.channels == 1


async def test_a_start_with_boolean_channels_is_refused_and_the_socket_stays_usable() -> None:
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        for channels in ("true", "1.0"):
            mark = len(client.messages)
            await client.send(
                '{"type": "start", "audio": {"sample_rate": 16000, "channels": ' + channels + "}}"
            )
            error = await client.wait_for("error", 5, since=mark)
            assert error["code"] == "invalid_message" and not error["fatal"], error
            assert "audio.channels" in error["message"]
        assert len(served.runtime.registry) == 0, "no session was started with guessed channels"
        started = await client.start()
        assert started["type"] == "session.started", started
        await client.close()

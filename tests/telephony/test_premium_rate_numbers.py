"""Premium-rate numbers: a number the organization owns may be one (inbound premium-rate lines are what
such numbers are for: the caller pays), since Parley only ever answers it and shows it as caller id;
no path dials or texts one. ``E164`` is a well-formed number; ``dialable`` is one Parley may call."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from parley.inputs import E164, dialable
from tests.telephony.conftest import CALLER, Phone, call_sid
from tests.telephony.test_webhooks import incoming, stream_of

PREMIUM = "+19005550178"


async def test_an_owned_premium_rate_number_answers_calls_but_is_never_dialed(phone: Phone) -> None:
    await phone.agent("hotline")
    added = await phone.http.post("/v1/phone-numbers", json={"number": PREMIUM, "agent": "hotline"})
    assert added.status_code == 201, added.text

    _url, parameters = stream_of(await phone.webhook("/twilio/voice", incoming(call_sid(1), to=PREMIUM)))
    call = (await phone.http.get(f"/v1/calls/{parameters['call_id']}")).json()
    assert (call["direction"], call["to_number"]) == ("inbound", PREMIUM)

    dialed = await phone.http.post("/v1/calls", json={"agent": "hotline", "to": PREMIUM, "from": PREMIUM})
    assert dialed.status_code == 422, dialed.text
    assert dialed.json()["detail"].startswith("to is a premium-rate number")
    assert (await phone.http.get("/v1/outbound-jobs")).json()["data"] == []
    assert phone.rest.placed == []


def test_e164_is_a_number_and_dialable_is_one_parley_may_call() -> None:
    assert TypeAdapter(E164).validate_python("+1 900 555 0178") == PREMIUM
    assert dialable(CALLER) == CALLER
    with pytest.raises(ValueError, match="premium-rate"):
        dialable(PREMIUM)
    with pytest.raises(ValidationError):
        TypeAdapter(E164).validate_python("+1900")

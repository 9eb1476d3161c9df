"""Twilio's webhooks change calls (create them, end them, hang up on them): only Twilio may call them.
Every request without the account's signature over its exact URL and form is refused (403) and leaves
nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]

from parley.store.models import Call
from tests.telephony.conftest import *  # noqa: F403  (the telephony suite's fixtures: platform, phone)
from tests.telephony.conftest import AUTH_TOKEN, BASE, CALLER, NUMBER, Phone, call_sid

SID = call_sid(1)

REQUESTS: dict[str, dict[str, str]] = {
    "/twilio/voice": {"CallSid": call_sid(2), "From": CALLER, "To": NUMBER, "CallStatus": "ringing"},
    "/twilio/status": {"CallSid": SID, "CallStatus": "completed", "CallDuration": "3"},
    "/twilio/amd": {"CallSid": SID, "AnsweredBy": "machine_end_beep"},
}


def forgeries(path: str, params: dict[str, str]) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(what, path to post, form, headers) of requests Twilio did not sign."""
    url = BASE + path
    right = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return [
        ("unsigned", path, params, {}),
        ("empty signature", path, params, {"X-Twilio-Signature": ""}),
        ("garbage", path, params, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
        (
            "another account's token",
            path,
            params,
            {"X-Twilio-Signature": RequestValidator("someone-elses-token").compute_signature(url, params)},
        ),
        ("a field changed", path, {**params, "CallSid": call_sid(3)}, {"X-Twilio-Signature": right}),
        ("a field added", path, {**params, "Extra": "1"}, {"X-Twilio-Signature": right}),
        ("another URL", path + "?call_id=call_00ff", params, {"X-Twilio-Signature": right}),
        (
            "signed over the URL only",
            path,
            params,
            {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, {})},
        ),
    ]


async def snapshot(phone: Phone) -> list[tuple[Any, ...]]:
    async with phone.platform.db.session() as session:
        calls = (await session.scalars(select(Call).order_by(Call.id))).all()
        return [(c.id, c.status, c.provider_call_id, c.answered_by, c.ended_at) for c in calls]


@pytest.mark.parametrize("path", sorted(REQUESTS))
async def test_forged_webhooks_are_refused_and_change_nothing(phone: Phone, path: str) -> None:
    agent_id = await phone.agent()
    await phone.platform.phone.add_number(phone.platform.default_org_id, NUMBER, "support")
    await phone.platform.calls.create(
        phone.platform.default_org_id,
        direction="outbound",
        transport="twilio",
        agent_ref=agent_id,
        provider_call_id=SID,
    )
    before = await snapshot(phone)
    for what, target, form, headers in forgeries(path, REQUESTS[path]):
        response = await phone.http.post(target, data=form, headers=headers)
        assert response.status_code == 403, (what, response.text)
        assert "<Connect>" not in response.text
    assert await snapshot(phone) == before
    assert phone.rest.hangups == [] and phone.rest.transfers == []

    genuine = await phone.webhook(path, REQUESTS[path])
    assert genuine.status_code in (200, 204), "the same request, signed by Twilio, is accepted"


async def test_a_body_that_is_not_a_form_is_refused(phone: Phone) -> None:
    params = REQUESTS["/twilio/status"]
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + "/twilio/status", {})
    response = await phone.http.post("/twilio/status", json=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 415
    huge = {"CallSid": SID, "Padding": "x" * 100_000}
    response = await phone.webhook("/twilio/status", huge)
    assert response.status_code == 413

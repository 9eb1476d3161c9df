"""A lead's text through Twilio (the local Twilio, in this event loop) and back: the whole server takes the
lead, wakes its worker, emails and texts the business, and Twilio's signed status callbacks tell it the
text was delivered (or not). A callback Twilio did not sign changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.notifications.errors import PermanentDeliveryError
from parley.notifications.mailbox import Mailbox
from parley.notifications.sms import SmsSender
from parley.platform.runtime import Platform
from parley.telephony.rest import TwilioRest
from parley.twilio_sim.server import TwilioSim, serving
from tests.notifications.conftest import smtp_server, until
from tests.phone.conftest import PARLEY_NUMBER, PhoneLab, phone_lab

BUSINESS_PHONE = "+14155550123"
UNREACHABLE_PHONE = "+14155550124"


def business(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Bay Plumbing Co.",
        "category": "plumbing",
        "postal_codes": ["94107"],
        "hours": {},
        "time_zone": "America/Los_Angeles",
        "notify_email": "office@bayplumbing.example.com",
        "notify_phone": BUSINESS_PHONE,
    }
    return body | changes


LEAD = {
    "name": "Ada Lovelace",
    "phone": "+14155550199",
    "category": "plumbing",
    "postal_code": "94107",
    "description": "The kitchen sink leaks.",
    "consent_to_call": True,
}


async def notifications(lab: PhoneLab, lead_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The lead's notifications by (recipient, channel), as the API shows them."""
    listed = await lab.api.get(f"/v1/leads/{lead_id}/notifications")
    assert listed.status_code == 200, listed.text
    return {(n["recipient"], n["channel"]): n for n in listed.json()}


async def until_settled(
    lab: PhoneLab, lead_id: str, done: Callable[[dict[Any, Any]], bool]
) -> dict[Any, Any]:
    async def check() -> bool:
        return done(await notifications(lab, lead_id))

    await until(check)
    return await notifications(lab, lead_id)


async def test_a_submitted_lead_is_emailed_and_texted_and_the_text_is_delivered(tmp_path: Path) -> None:
    mailbox = Mailbox()
    async with (
        smtp_server(mailbox) as port,
        phone_lab(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            sms_from=PARLEY_NUMBER,
            notification_poll_s=60.0,  # only the wake after the lead's commit starts the worker in time
        ) as lab,
    ):
        made = await lab.api.post("/v1/businesses", json=business())
        assert made.status_code == 201, made.text
        submitted = await lab.api.post("/v1/leads", json=LEAD)
        assert submitted.status_code == 201, submitted.text
        lead_id = submitted.json()["id"]

        [mail] = await mailbox.wait_for(1, timeout_s=20)
        rows = await until_settled(
            lab, lead_id, lambda r: r[(BUSINESS_PHONE, "sms")]["status"] == "delivered"
        )
        metrics = (await lab.api.get("/metrics")).text

    [text] = lab.twilio.messages.values()
    assert (text.to, text.from_, text.status) == (BUSINESS_PHONE, PARLEY_NUMBER, "delivered")
    assert text.body.startswith(
        "New lead for Bay Plumbing Co.: Ada Lovelace, +14155550199, plumbing (94107)."
    )
    assert [(w.params["MessageStatus"], w.status_code) for w in text.webhooks] == [
        ("sent", 204),
        ("delivered", 204),
    ]
    sms = rows[(BUSINESS_PHONE, "sms")]
    assert sms["provider_id"] == text.sid and sms["attempts"] == 1
    assert sms["sent_at"] is not None and sms["delivered_at"] is not None
    email = rows[("office@bayplumbing.example.com", "email")]
    assert email["status"] == "sent" and email["provider_id"] == mail.message_id == f"<{email['id']}@parley>"
    assert 'parley_notifications_total{channel="email",result="sent"} 1.0' in metrics
    assert 'parley_notifications_total{channel="sms",result="sent"} 1.0' in metrics
    assert 'parley_notifications_total{channel="sms",result="delivered"} 1.0' in metrics
    assert "parley_notification_latency_seconds_count 2.0" in metrics


async def test_an_undelivered_text_fails_with_twilios_error_and_forged_callbacks_are_refused(
    tmp_path: Path,
) -> None:
    async with phone_lab(tmp_path, sms_from=PARLEY_NUMBER, notification_poll_s=0.1) as lab:
        lab.twilio.sms.unreachable(UNREACHABLE_PHONE)
        assert (await lab.api.post("/v1/businesses", json=business())).status_code == 201
        made = await lab.api.post(
            "/v1/businesses", json=business(name="Far Away", notify_phone=UNREACHABLE_PHONE)
        )
        assert made.status_code == 201, made.text
        lead_id = (await lab.api.post("/v1/leads", json=LEAD)).json()["id"]

        def settled(rows: dict[Any, Any]) -> bool:
            statuses = {key: str(row["status"]) for key, row in rows.items()}
            return (
                statuses[(BUSINESS_PHONE, "sms")] == "delivered"
                and statuses[(UNREACHABLE_PHONE, "sms")] == "failed"
            )

        rows = await until_settled(lab, lead_id, settled)
        failed = rows[(UNREACHABLE_PHONE, "sms")]
        assert failed["last_error"] == "twilio:30003 undelivered" and failed["delivered_at"] is None
        delivered = rows[(BUSINESS_PHONE, "sms")]
        assert all(n["status"] == "pending" for (_, channel), n in rows.items() if channel == "email"), (
            "no SMTP server here: emails wait for one"
        )

        url = f"{lab.base}/twilio/sms-status?notification={delivered['id']}"
        forged = {
            "AccountSid": lab.twilio.account_sid,
            "MessageSid": delivered["provider_id"],
            "MessageStatus": "undelivered",
            "ErrorCode": "30007",
        }
        async with httpx.AsyncClient() as http:
            unsigned = await http.post(url, data=forged)
            wrong = await http.post(
                url, data=forged, headers={"X-Twilio-Signature": lab.twilio.sign(url, {})}
            )
            # signed with another account's token: what an attacker who guessed the URL could do at best
            other = TwilioSim(auth_token="f" * 32)
            spoofed = await http.post(
                url, data=forged, headers={"X-Twilio-Signature": other.sign(url, forged)}
            )
            await other.aclose()
            # Twilio's own, late and out of order: changes nothing either (a delivered text stays delivered)
            late = await http.post(
                url, data=forged, headers={"X-Twilio-Signature": lab.twilio.sign(url, forged)}
            )
        assert [unsigned.status_code, wrong.status_code, spoofed.status_code] == [403, 403, 403]
        assert late.status_code == 204
        after = await notifications(lab, lead_id)
        assert after[(BUSINESS_PHONE, "sms")] == delivered


async def test_twilio_refusing_a_number_is_a_permanent_failure(platform: Platform) -> None:
    async with serving(TwilioSim()) as sim:
        assert sim.base_url is not None
        rest = TwilioRest(sim.account_sid, sim.auth_token, api_base_url=sim.base_url)
        settings = platform.settings.model_copy(update={"sms_from": PARLEY_NUMBER})
        sender = SmsSender(rest, platform.db, settings)
        with pytest.raises(PermanentDeliveryError, match="21211"):
            await sender.send("ntf_00", platform.default_org_id, "12", "hello")
        sid = await sender.send("ntf_01", platform.default_org_id, "+14155550100", "hello")
        assert sim.messages[sid].status_callback is None, "no public URL: no status callbacks asked for"
        async with httpx.AsyncClient(auth=(sim.account_sid, sim.auth_token)) as http:
            listed = await http.get(f"{sim.base_url}/2010-04-01/Accounts/{sim.account_sid}/Messages.json")
        assert [m["sid"] for m in listed.json()["messages"]] == [sid]

"""The REST client against a tiny local stand-in for Twilio's API: the form fields Twilio gets, and
Twilio's errors as typed errors."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from parley.telephony.rest import (
    INVALID_NUMBER,
    NOT_FOUND,
    RedirectingHttpClient,
    TwilioRest,
    TwilioRestError,
)
from tests.telephony.conftest import ACCOUNT_SID, AUTH_TOKEN, call_sid

INVALID = "+15005550001"
"""The To number the stand-in refuses, as Twilio refuses a number that is not valid (21211)."""


@dataclass
class Seen:
    method: str
    path: str
    form: dict[str, list[str]]
    user: str


@dataclass
class FakeTwilio:
    url: str
    requests: list[Seen] = field(default_factory=list)


def _handler(seen: list[Seen]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            auth = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
            form = parse_qs(body, keep_blank_values=True)
            seen.append(Seen("POST", self.path, form, auth.split(":")[0]))
            prefix = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
            if self.path == f"{prefix}/Calls.json":
                if form["To"] == [INVALID]:
                    self._error(
                        400, INVALID_NUMBER, f"The 'To' number {INVALID} is not a valid phone number."
                    )
                else:
                    self._json(201, {"sid": call_sid(1), "status": "queued", "to": form["To"][0]})
            elif self.path == f"{prefix}/Calls/{call_sid(1)}.json":
                self._json(200, {"sid": call_sid(1), "status": "completed"})
            elif self.path == f"{prefix}/Messages.json":
                self._json(201, {"sid": "SM" + "0" * 32, "status": "queued"})
            else:
                self._error(404, NOT_FOUND, f"The requested resource {self.path} was not found")

        def _json(self, code: int, payload: dict[str, object]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: int, message: str) -> None:
            # Twilio's error body: https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions
            more = f"https://www.twilio.com/docs/errors/{code}"
            self._json(status, {"code": code, "message": message, "more_info": more, "status": status})

    return Handler


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    seen: list[Seen] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeTwilio(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()


def rest_for(fake: FakeTwilio) -> TwilioRest:
    return TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.url)


async def test_placing_a_call_asks_for_progress_events_and_asynchronous_machine_detection(
    fake_twilio: FakeTwilio,
) -> None:
    sid = await rest_for(fake_twilio).place_call(
        to="+14155550100",
        from_="+12025550123",
        url="https://voice.example.com/twilio/voice?call_id=call_1",
        status_callback="https://voice.example.com/twilio/status",
        amd_callback="https://voice.example.com/twilio/amd",
        timeout_s=30,
    )
    assert sid == call_sid(1)
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert request.user == ACCOUNT_SID, "basic auth as the account"
    form = {name: values if len(values) > 1 else values[0] for name, values in request.form.items()}
    assert form == {
        "To": "+14155550100",
        "From": "+12025550123",
        "Url": "https://voice.example.com/twilio/voice?call_id=call_1",
        "Method": "POST",
        "StatusCallback": "https://voice.example.com/twilio/status",
        "StatusCallbackMethod": "POST",
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": "30",
        "MachineDetection": "DetectMessageEnd",
        "AsyncAmd": "true",
        "AsyncAmdStatusCallback": "https://voice.example.com/twilio/amd",
        "AsyncAmdStatusCallbackMethod": "POST",
    }


async def test_without_a_machine_callback_no_detection_is_asked_for(fake_twilio: FakeTwilio) -> None:
    await rest_for(fake_twilio).place_call(
        to="+14155550100", from_="+12025550123", url="https://x/v", status_callback="https://x/s"
    )
    [request] = fake_twilio.requests
    assert "MachineDetection" not in request.form and "AsyncAmd" not in request.form
    assert "Timeout" not in request.form


async def test_hang_up_transfer_and_sms(fake_twilio: FakeTwilio) -> None:
    rest = rest_for(fake_twilio)
    await rest.hang_up(call_sid(1))
    await rest.transfer(call_sid(1), "sip:desk@pbx.example.com")
    message = await rest.send_sms("+14155550100", "+12025550123", "Your table is booked.")
    hang_up, transfer, sms = fake_twilio.requests
    call_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call_sid(1)}.json"
    assert (hang_up.path, hang_up.form) == (call_path, {"Status": ["completed"]})
    assert transfer.path == call_path and list(transfer.form) == ["Twiml"]
    assert "<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial>" in transfer.form["Twiml"][0]
    assert sms.path.endswith("/Messages.json") and message.startswith("SM")
    assert sms.form == {
        "To": ["+14155550100"],
        "From": ["+12025550123"],
        "Body": ["Your table is booked."],
    }


async def test_twilio_errors_become_typed_errors_with_twilio_codes(fake_twilio: FakeTwilio) -> None:
    rest = rest_for(fake_twilio)
    with pytest.raises(TwilioRestError) as invalid:
        await rest.place_call(
            to=INVALID, from_="+12025550123", url="https://x/v", status_callback="https://x/s"
        )
    assert (invalid.value.code, invalid.value.status) == (21211, 400)
    assert "not a valid phone number" in invalid.value.message
    with pytest.raises(TwilioRestError) as missing:
        await rest.hang_up(call_sid(2))
    assert (missing.value.code, missing.value.status) == (20404, 404)


async def test_an_unreachable_api_is_an_error_without_a_code() -> None:
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url="http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(TwilioRestError) as unreachable:
        await rest.hang_up(call_sid(1))
    assert unreachable.value.code is None and unreachable.value.status is None


def test_only_twilio_api_hosts_are_redirected() -> None:
    client = RedirectingHttpClient("http://127.0.0.1:5000/")
    assert client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?Page=2") == (
        "http://127.0.0.1:5000/2010-04-01/Accounts/AC1/Calls.json?Page=2"
    )
    assert (
        client.rewrite("https://api.dublin.ie1.twilio.com/2010-04-01/x")
        == "http://127.0.0.1:5000/2010-04-01/x"
    )
    assert client.rewrite("https://example.com/2010-04-01/x") == "https://example.com/2010-04-01/x"
    assert client.rewrite("https://api.twilio.com.evil.example/x") == "https://api.twilio.com.evil.example/x"

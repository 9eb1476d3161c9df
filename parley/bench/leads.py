"""``parley bench leads``: leads in, businesses told by email and text, AI call-backs placed; measured.

The server runs in its own process (store, REST API, notification worker, outbound queue) with the tiny
deterministic engines; this process plays everyone else: an SMTP server (aiosmtpd, the mailbox of
``parley mailbox``) receiving the emails, the local Twilio carrying the texts and the calls, and the
integrations submitting leads over HTTP, ``--concurrency`` at a time. Businesses in four categories
and areas take them (a lead matches one or two, always open).

Each notification is found by its identity, not by its words: an email by its Message-ID (made from the
notification's id), a text by its Message SID (the notification's ``provider_id``). Its latency is from
the start of the lead's submission to the SMTP server accepting the email, or to the local Twilio
accepting the text (its ``date_created``); both clocks are this machine's wall clock.

- ``notified``: leads whose every matched business got both its email and its text;
- ``duplicates``: notifications delivered more than once (the same Message-ID twice, the same text to
  the same number twice);
- ``callback_placement_p50_ms``: from asking for a lead's call-back (``POST /v1/leads/{id}/callback``)
  to the local Twilio being asked to place the call. The callees answer and hang up after a second, so
  each call-back also ends with an outcome email (``callback_outcomes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer

from parley.bench.server_process import announce_port, server_process
from parley.notifications.email import message_id
from parley.notifications.mailbox import Mailbox, ReceivedMail, bound_port, serve
from parley.twilio_sim.server import TwilioSim, serving

ACCOUNT_SID = "AC" + "1e" * 16
CALLER_ID = "+14155550100"
"""The organization's number: caller id of call-backs, sender of texts."""
SERVER_CMD = ["-m", "parley.bench.leads"]
AGENT = "bench-callbacks"
HTTP_TIMEOUT_S = 30.0
TUNABLE = "PARLEY_NOTIFICATION_"
"""The notification worker's settings pass from this environment to the server (to try other values);
every other ``PARLEY_*`` is the bench's own."""
SETTLE_GRACE_S = 1.0
"""After the last expected notification, how long late duplicates are still counted."""

BUSINESSES: list[dict[str, Any]] = [
    {"name": "Hudson Plumbing", "category": "plumbing", "latitude": 40.7128, "longitude": -74.0060,
     "radius_km": 20.0, "notify_email": "desk@hudson.example.com", "notify_phone": "+12125550100"},
    {"name": "Brooklyn Pipes", "category": "plumbing", "latitude": 40.6782, "longitude": -73.9442,
     "radius_km": 10.0, "notify_email": "jobs@brooklynpipes.example.com", "notify_phone": "+17185550100"},
    {"name": "Loop Electric", "category": "electrical", "latitude": 41.8781, "longitude": -87.6298,
     "radius_km": 25.0, "notify_email": "office@loopelectric.example.com", "notify_phone": "+13125550100"},
    {"name": "Bay Heating", "category": "hvac", "postal_codes": ["94107", "94110"],
     "notify_email": "service@bayheating.example.com", "notify_phone": "+14155550123"},
]  # fmt: skip
"""Always open (``hours: {}``), so every lead is matched the same way whenever the bench runs."""
PROFILES: list[tuple[str, str, dict[str, Any]]] = [
    ("718", "plumbing", {"latitude": 40.6782, "longitude": -73.9442}),  # Brooklyn: both plumbers
    ("212", "plumbing", {"latitude": 40.8000, "longitude": -73.9600}),  # Upper Manhattan: Hudson only
    ("312", "electrical", {"latitude": 41.8827, "longitude": -87.6233}),  # the Loop
    ("415", "hvac", {"postal_code": "94107"}),  # San Francisco, by postal code
]


def _lead(index: int) -> dict[str, Any]:
    area, category, where = PROFILES[index % len(PROFILES)]
    return {
        "name": f"Lead {index:05d}",
        "phone": f"+1{area}555{1000 + index // len(PROFILES):04d}",
        "category": category,
        "description": f"Bench lead {index}: please call back.",
        "consent_to_call": True,
        **where,
    }


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


# --- the server side ----------------------------------------------------------------------------------


def serve_bench_server() -> None:
    """The child: the full app on a free port of loopback, its ``public_url`` its own address (so the
    local Twilio's signed webhooks check out), storage in ``PARLEY_DATA_DIR`` whatever ``.env`` says, and
    the fast engines; prints the port once ready."""
    from parley.audio.vad import EnergyVAD
    from parley.config import Settings
    from parley.engine.agent import AgentConfig
    from parley.engine.session import EngineStack
    from parley.providers.asr.scripted import ScriptedRecognizer
    from parley.providers.llm.scripted import ScriptedModel
    from parley.providers.tts.tone import ToneSynthesizer
    from parley.server.app import create_platform_app
    from parley.server.lifecycle import DrainingServer, bound_port, listen_socket, make_server
    from parley.server.stacks import AgentCatalog

    listener = listen_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = Settings(
        database_url=None, redis_url=None, s3_bucket=None, public_url=base, shutdown_grace_s=2.0
    )
    engines = EngineStack(
        vad_factory=lambda: EnergyVAD(16000, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=ScriptedRecognizer([]),
        llm=ScriptedModel([], default_reply="Thanks, goodbye!"),
        tts=ToneSynthesizer(16000, ms_per_char=10.0),
    )

    async def fast(_: AgentConfig) -> EngineStack:
        return engines

    # The call-backs run the API agent ``AGENT``; the catalog's own (on record as a file agent) is another.
    catalog = AgentCatalog([AgentConfig(name="assistant")])
    app = create_platform_app(settings, catalog=catalog, stack_factory=fast)

    async def announce(server: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        announce_port(bound_port(server))

    make_server(app, settings, host="127.0.0.1", log_level="warning", on_started=announce).run(
        sockets=[listener]
    )


# --- this side ------------------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """What reached the SMTP server: each message's wall-clock arrival, by Message-ID (every copy)."""

    emails: dict[str, list[float]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def mail(self, received: ReceivedMail) -> None:
        self.emails.setdefault(received.message_id, []).append(time.time())
        self.changed.set()

    @property
    def count(self) -> int:
        return sum(len(copies) for copies in self.emails.values())


@dataclass
class Submitted:
    lead_id: str
    started: float
    """Wall clock when the request began."""
    http_ms: float
    businesses: list[str]
    phone: str


@contextlib.asynccontextmanager
async def _mailbox(arrivals: Arrivals) -> AsyncIterator[int]:
    server = await serve(Mailbox(on_message=arrivals.mail))
    try:
        yield bound_port(server)
    finally:
        server.close()
        await server.wait_closed()


def _server_env(
    data_dir: str, api_key: str, auth_token: str, twilio_url: str, smtp_port: int
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PARLEY_") or key.startswith(TUNABLE)
    }
    env.update(
        {
            "PARLEY_DATA_DIR": data_dir,
            "PARLEY_API_KEY": api_key,
            "PARLEY_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "PARLEY_TWILIO_AUTH_TOKEN": auth_token,
            "PARLEY_TWILIO_API_BASE_URL": twilio_url,
            "PARLEY_TWILIO_CALLER_ID": CALLER_ID,
            "PARLEY_SMS_FROM": CALLER_ID,
            "PARLEY_SMTP_HOST": "127.0.0.1",
            "PARLEY_SMTP_PORT": str(smtp_port),
            "PARLEY_SMTP_STARTTLS": "false",
            "PARLEY_SMTP_FROM": "Parley bench <leads@parley.bench>",
            "PARLEY_OUTBOUND_CALLING_WINDOW": "00:00-24:00",
            "PARLEY_LOG_LEVEL": "warning",
        }
    )
    return env


async def _setup(api: httpx.AsyncClient) -> None:
    agent = {
        "name": AGENT,
        "config": {"name": AGENT, "first_message": "Hi {{caller.name}}, this is about your request."},
    }
    made = await api.post("/v1/agents", json=agent)
    made.raise_for_status()
    agent_id = made.json()["id"]
    for business in BUSINESSES:
        body = {"hours": {}, "time_zone": "America/New_York", "agent_id": agent_id, **business}
        (await api.post("/v1/businesses", json=body)).raise_for_status()


async def _submit(api: httpx.AsyncClient, index: int, gate: asyncio.Semaphore) -> Submitted:
    lead = _lead(index)
    async with gate:
        started, clock = time.time(), time.perf_counter()
        response = await api.post("/v1/leads", json=lead, headers={"Idempotency-Key": f"bench-{index}"})
        http_ms = (time.perf_counter() - clock) * 1000
    response.raise_for_status()
    body = response.json()
    return Submitted(body["id"], started, http_ms, [m["business_id"] for m in body["matches"]], lead["phone"])


async def _wait_for(condition: Callable[[], bool], changed: asyncio.Event, limit_s: float) -> bool:
    """Until ``condition`` holds (re-checked whenever ``changed`` is set, and every 50 ms for the texts)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            while not condition():
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 0.05)
            return True
    return condition()


async def run_leads_bench(
    progress: Callable[[str], None], *, leads: int = 100, callbacks: int = 3, concurrency: int = 10
) -> dict[str, Any]:
    api_key = "pk_bench-" + secrets.token_urlsafe(16)
    auth_token = secrets.token_urlsafe(24)
    arrivals = Arrivals()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parley-bench-leads-") as data_dir:
        async with (
            serving(TwilioSim(account_sid=ACCOUNT_SID, auth_token=auth_token)) as twilio,
            _mailbox(arrivals) as smtp_port,
        ):
            assert twilio.base_url is not None
            env = _server_env(data_dir, api_key, auth_token, twilio.base_url, smtp_port)
            progress("starting the server …")
            with server_process([*SERVER_CMD, "--serve"], env=env) as (_child, port):
                base = f"http://127.0.0.1:{port}"
                headers = {"Authorization": f"Bearer {api_key}"}
                async with httpx.AsyncClient(
                    base_url=base, headers=headers, timeout=HTTP_TIMEOUT_S, trust_env=False
                ) as api:
                    await _setup(api)
                    report = await _measure(progress, api, twilio, arrivals, leads, callbacks, concurrency)
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


async def _measure(
    progress: Callable[[str], None],
    api: httpx.AsyncClient,
    twilio: TwilioSim,
    arrivals: Arrivals,
    count: int,
    callbacks: int,
    concurrency: int,
) -> dict[str, Any]:
    progress(f"submitting {count} leads, {concurrency} at a time …")
    gate = asyncio.Semaphore(concurrency)
    submitted = await asyncio.gather(*(_submit(api, i, gate) for i in range(count)))
    expected = sum(len(s.businesses) for s in submitted)
    limit_s = 60.0 + count * 0.5

    def all_in() -> bool:
        return arrivals.count >= expected and len(twilio.messages) >= expected

    arrived = await _wait_for(all_in, arrivals.changed, limit_s)
    if not arrived:
        progress(f"not every notification arrived within {limit_s:.0f} s")
    await asyncio.sleep(SETTLE_GRACE_S)  # late copies still count as duplicates

    texts_by_sid = {message.sid: message for message in twilio.messages.values()}
    latencies: list[float] = []
    notified = 0
    for lead in submitted:
        rows = (await api.get(f"/v1/leads/{lead.lead_id}/notifications")).raise_for_status().json()
        got: set[tuple[str, str]] = set()
        for row in rows:
            if row["kind"] != "new_lead":
                continue
            if row["channel"] == "email":
                copies = arrivals.emails.get(message_id(row["id"]))
                if copies:
                    got.add((row["business_id"], "email"))
                    latencies.append((min(copies) - lead.started) * 1000)
            elif row["provider_id"] in texts_by_sid:
                got.add((row["business_id"], "sms"))
                accepted = texts_by_sid[row["provider_id"]].date_created.timestamp()
                latencies.append((accepted - lead.started) * 1000)
        if all((b, c) in got for b in lead.businesses for c in ("email", "sms")):
            notified += 1
    same_texts = Counter((m.to, m.body) for m in twilio.messages.values())
    duplicates = sum(len(c) - 1 for c in arrivals.emails.values()) + sum(n - 1 for n in same_texts.values())

    placements = await _callbacks(progress, api, twilio, arrivals, submitted[:callbacks])
    return {
        "leads": count,
        "notified": notified,
        "duplicates": duplicates,
        "notifications_expected": expected * 2,
        "notifications_delivered": len(latencies),
        "notification_p50_ms": percentile(latencies, 50),
        "notification_p99_ms": percentile(latencies, 99),
        "notification_max_ms": round(max(latencies), 1) if latencies else None,
        "submit_p50_ms": percentile([s.http_ms for s in submitted], 50),
        **placements,
    }


async def _callbacks(
    progress: Callable[[str], None],
    api: httpx.AsyncClient,
    twilio: TwilioSim,
    arrivals: Arrivals,
    chosen: list[Submitted],
) -> dict[str, Any]:
    if not chosen:
        return {"callbacks": 0, "callback_placement_p50_ms": None, "callback_placement_max_ms": None}
    progress(f"asking for {len(chosen)} call-backs …")
    for lead in chosen:
        twilio.script(lead.phone, hang_up_after_s=1.0)
    before = arrivals.count
    placement: list[float] = []
    for lead in chosen:  # one at a time: each measured alone
        started = time.time()
        (await api.post(f"/v1/leads/{lead.lead_id}/callback", json={})).raise_for_status()
        phone = lead.phone

        def dialed(number: str = phone) -> bool:
            return bool(twilio.calls_to(number))

        placed = await _wait_for(dialed, arrivals.changed, 30.0)
        if placed:
            placement.append((twilio.calls_to(lead.phone)[0].date_created.timestamp() - started) * 1000)
    await _wait_for(lambda: arrivals.count >= before + len(chosen), arrivals.changed, 30.0)
    return {
        "callbacks": len(chosen),
        "callbacks_placed": len(placement),
        "callback_placement_p50_ms": percentile(placement, 50),
        "callback_placement_max_ms": round(max(placement), 1) if placement else None,
        "callback_outcomes": arrivals.count - before,
    }


# --- the command ----------------------------------------------------------------------------------------


def bench_leads(
    leads: Annotated[int, typer.Option("--leads", min=1, max=5000, help="leads to submit")] = 100,
    callbacks: Annotated[int, typer.Option("--callbacks", min=0, max=50, help="call-backs to ask for")] = 3,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=100, help="submissions at once")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Lead notifications (email and SMS) and AI call-backs against the local SMTP server and Twilio."""
    import json

    from rich.console import Console
    from rich.table import Table

    err = Console(stderr=True)
    report = asyncio.run(
        run_leads_bench(err.print, leads=leads, callbacks=min(callbacks, leads), concurrency=concurrency)
    )
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"parley bench leads ({report['seconds']:.0f} s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, "-" if value is None else str(value))
    Console().print(table)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve_bench_server()
    else:
        typer.run(bench_leads)

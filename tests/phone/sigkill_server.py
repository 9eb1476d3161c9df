"""A real Parley server for the phone SIGKILL test: the full platform app, Twilio on, a number routed to
an agent, fast deterministic engines; killed mid-call by the test.

Usage: python -m tests.phone.sigkill_server DATA_DIR DATABASE_URL TWILIO_API_BASE_URL [PORT]
Listens on PORT (default: a free one; the restart passes the first run's, so the URL Twilio signs
stays the same), with ``public_url`` its own URL, and announces its port (``announce_port``) once the
models are warm and the number answers. It runs the production server (``make_server``: drain on SIGTERM).
"""

from __future__ import annotations

import sys
from pathlib import Path

from parley.bench.server_process import announce_port
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.platform.runtime import Platform
from parley.providers.llm.scripted import ScriptRule
from parley.server.app import create_platform_app
from parley.server.lifecycle import DrainingServer, listen_socket, make_server
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent, stack
from tests.server.conftest import settings

ACCOUNT_SID = "AC" + "5e" * 16
AUTH_TOKEN = "auth-token-of-the-sigkill-account"
API_KEY = "pk_bootstrap-key-for-the-phone-sigkill-test"
NUMBER = "+14155550142"
"""The Parley number the caller dials."""
CALLER = "+12025550187"

GREETING = "Thanks for calling the bakery."
QUESTIONS = ["What time do you open?", "Tell me everything about your opening hours."]
ANSWER = "We open at nine."
LONG_ANSWER = (
    "Our opening hours are simple. "
    "We open at nine in the morning on every weekday and close at six in the evening. "
    "On Saturdays we open an hour later, at ten, and close at four in the afternoon. "
    "On Sundays the whole bakery stays closed all day long, and so do we. "
    "Public holidays follow the Sunday hours, except in December, when we open every day."
)
MS_PER_CHAR = 20.0
"""Tone speech this many ms per character: the long answer plays for about seven seconds."""


def phone_agent() -> AgentConfig:
    return agent(name="bakery-line", first_message=GREETING)


def engines() -> EngineStack:
    rules = [ScriptRule.say("everything", LONG_ANSWER), ScriptRule.say("open?", ANSWER)]
    return stack(QUESTIONS, rules, MS_PER_CHAR)


async def route_number(platform: Platform) -> None:
    """The agent on the books and the number routed to it (already there on a restart)."""
    org = platform.default_org_id
    stored, _ = await platform.agents.ensure(org, phone_agent())
    if not any(n.number == NUMBER for n in await platform.phone.numbers(org)):
        await platform.phone.add_number(org, NUMBER, stored.id, label="bakery")


def main(data_dir: Path, database_url: str, twilio_api: str, port: int = 0) -> None:
    listener = listen_socket("127.0.0.1", port)
    port = int(listener.getsockname()[1])
    config = settings(
        data_dir=data_dir,
        database_url=database_url,
        api_key=API_KEY,
        public_url=f"http://127.0.0.1:{port}",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_base_url=twilio_api,
    )
    shared = engines()  # one script for the one call

    async def factory(_: AgentConfig) -> EngineStack:
        return shared

    app = create_platform_app(config, catalog=AgentCatalog([phone_agent()]), stack_factory=factory)

    async def ready(_: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        await route_number(app.state.platform)
        announce_port(port)

    with listener:
        make_server(app, config, host="127.0.0.1", log_level="warning", on_started=ready).run(
            sockets=[listener]
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))

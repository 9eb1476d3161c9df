"""``parley twilio-sim``: the local Twilio as a server, for trying Parley's phone path without a carrier.

The function is a plain Typer command; ``parley/cli.py`` registers it.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from parley.twilio_sim.server import TwilioSim

err = Console(stderr=True)


def twilio_sim(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8081,
    account_sid: Annotated[
        str | None,
        typer.Option(help="the account's SID (default PARLEY_TWILIO_ACCOUNT_SID, else a new one)"),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(help="the account's auth token (default PARLEY_TWILIO_AUTH_TOKEN, else a new one)"),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file of scripted callees by number (see parley/twilio_sim/callee.py)"),
    ] = None,
    loss: Annotated[float, typer.Option(help="share of the callers' media packets lost (0..1)")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="random delay of the callers' media packets")] = 0.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Run a local Twilio: the REST API (calls, messages), status callbacks, TwiML and Media Streams."""
    from parley.config import get_settings
    from parley.server.lifecycle import ListenError, listen_socket
    from parley.twilio_sim.callee import Callees, ScenarioError, load_scenario
    from parley.twilio_sim.network import NetworkProfile
    from parley.twilio_sim.server import TwilioSim

    settings = get_settings()
    try:
        callees = load_scenario(scenario) if scenario else Callees()
        network = NetworkProfile(loss=loss, jitter_ms=jitter_ms)
    except (ScenarioError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from exc
    token = auth_token or (
        settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    )
    sim = TwilioSim(
        account_sid=account_sid or settings.twilio_account_sid,
        auth_token=token,
        callees=callees,
        network=None if network.ideal else network,
    )
    try:
        listener = listen_socket(host, port)
    except ListenError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    sim.base_url = f"http://{shown}:{listener.getsockname()[1]}"
    err.print(
        f"Local Twilio on {sim.base_url} — point Parley at it with\n"
        f"  PARLEY_TWILIO_API_BASE_URL={sim.base_url}\n"
        f"  PARLEY_TWILIO_ACCOUNT_SID={sim.account_sid}\n"
        f"  PARLEY_TWILIO_AUTH_TOKEN={sim.auth_token}\n"
        f"Calls and messages so far: {sim.base_url}/sim/calls, {sim.base_url}/sim/messages",
        highlight=False,
        soft_wrap=True,
    )
    with listener:
        asyncio.run(_serve(sim, listener, log_level))


async def _serve(sim: TwilioSim, listener: socket.socket, log_level: str) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(sim.app, log_level=log_level, lifespan="off"))
    try:
        await server.serve(sockets=[listener])
    finally:
        await sim.aclose()

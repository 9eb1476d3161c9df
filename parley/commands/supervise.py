"""``parley supervise …``: join a live AI call as a supervisor (listen, whisper, barge) on a running server.

Like ``parley rooms``, these commands talk to the server that runs the call (``--url`` or ``PARLEY_URL``)
with an API key (``--key`` or ``PARLEY_API_KEY``), which is only ever sent to the server, never printed.
``join`` prints the supervisor's id and the WebSocket to connect its audio to (a room participant's
socket: docs/coaching.md, "Supervising AI calls").
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from parley.commands.output import listing, print_whole, shown
from parley.commands.rooms import DEFAULT_URL, JsonOpt, KeyOpt, UrlOpt, _call, _fail, _print_json, out

supervise_app = typer.Typer(
    help="Supervise a live AI call: join it listening, whisper guidance to the agent, barge in, leave.",
    no_args_is_help=True,
)

CallArg = Annotated[str, typer.Argument(help="the call's id")]
SupervisorArg = Annotated[str, typer.Argument(help="the supervisor's id (s_…)")]
MODES = ("listen", "whisper", "barge")


def _path(call_id: str, *parts: str) -> str:
    """``/v1/calls/<id>/supervisors/…`` with each id quoted whole."""
    return "/".join(
        ["/v1/calls", quote(call_id, safe=""), "supervisors", *(quote(p, safe="") for p in parts)]
    )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        _fail(f"mode must be one of {', '.join(MODES)}, got {mode!r}", 2)


@supervise_app.command("join")
def supervise_join(
    call_id: CallArg,
    mode: Annotated[str, typer.Option("--mode", help="listen, whisper or barge")] = "listen",
    name: Annotated[str, typer.Option(help="shown to the other supervisors")] = "",
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Join a live call as a supervisor: prints your id and the socket to connect (its token works once)."""
    _check_mode(mode)
    invitation = _call("POST", url, key, _path(call_id), {"mode": mode, "name": name})
    if as_json:
        _print_json(invitation)
        return
    out.print(
        f"supervisor [bold]{shown(str(invitation['participant_id']))}[/bold] "
        f"({shown(str(invitation['mode']))}) on call {shown(str(invitation['call_id']))}; "
        f"the token works once, until {shown(str(invitation['expires_at']))}"
    )
    print_whole(out, f"socket: {invitation['ws_url']}")


@supervise_app.command("mode")
def supervise_mode(
    call_id: CallArg,
    supervisor_id: SupervisorArg,
    mode: Annotated[str, typer.Argument(help="listen, whisper or barge")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Switch live: listen (heard by nobody), whisper (the agent hears it as guidance), barge (take over)."""
    _check_mode(mode)
    changed = _call("PATCH", url, key, _path(call_id, supervisor_id), {"mode": mode})
    out.print(f"{shown(str(changed['id']))} is now in {shown(str(changed['mode']))} mode")


@supervise_app.command("whisper")
def supervise_whisper(
    call_id: CallArg,
    supervisor_id: SupervisorArg,
    text: Annotated[
        str, typer.Argument(help="guidance for the agent's next reply (the caller hears nothing)")
    ],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Type guidance to the agent, once joined: the socket that join printed must be connected."""
    _call("POST", url, key, _path(call_id, supervisor_id, "whisper"), {"text": text})
    out.print("whispered to the agent")


@supervise_app.command("leave")
def supervise_leave(
    call_id: CallArg, supervisor_id: SupervisorArg, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None
) -> None:
    """Leave the call (or withdraw an invitation not used yet)."""
    _call("DELETE", url, key, _path(call_id, supervisor_id))
    out.print(f"{shown(supervisor_id)} left call {shown(call_id)}")


@supervise_app.command("list")
def supervise_list(
    call_id: CallArg, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Who supervises a live call, and how."""
    listed: dict[str, Any] = _call("GET", url, key, _path(call_id))
    if as_json:
        _print_json(listed)
        return
    rows = [
        (s["id"], s["mode"], shown(s["name"]), "yes" if s["connected"] else "invited")
        for s in listed["supervisors"]
    ]
    title = f"Supervisors of {shown(listed['call_id'])}"
    out.print(listing(title, ("id", "mode", "name", "connected"), rows))
    if listed["handed_over"]:
        out.print("a supervisor has the call: the agent listens")

"""``parley rooms …``: coached calls on a running server, over its HTTP API.

Rooms live in the server process that runs them, so unlike ``parley agents`` these commands talk to the
server (``--url``, or ``PARLEY_URL``) with an API key (``--key``, or ``PARLEY_API_KEY``), never to the
store directly. The key is only ever sent to the server, never printed. Names, hints and the server's
error messages (which may quote a request) are printed through ``shown``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table

from parley.commands.output import listing, print_whole, shown

rooms_app = typer.Typer(
    help="Coached calls on a running server: open one, invite a rep, a customer or a coach, supervise, end.",
    no_args_is_help=True,
)

out = Console(emoji=False)  # ":name:" in a name or hint is text, not an emoji
err = Console(stderr=True, emoji=False)

UrlOpt = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="PARLEY_URL",
        help="the server's base URL (default: the server this machine's PARLEY_HOST and PARLEY_PORT run)",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="PARLEY_API_KEY", help="an API key (default: $PARLEY_API_KEY)", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
RoomArg = Annotated[str, typer.Argument(help="the room's id (room_…)")]
ParticipantArg = Annotated[str, typer.Argument(help="the participant's id (p_…, or ai-coach)")]
DEFAULT_URL = ""
"""No ``--url``: the local server, where ``parley serve`` with the same settings listens."""
MODES = ("speak", "listen", "whisper", "barge")


def _path(*parts: str) -> str:
    """``/v1/rooms/<id>/…`` with each id quoted whole (an id is never a path of its own)."""
    return "/v1/rooms/" + "/".join(quote(part, safe="") for part in parts)


def _call(method: str, url: str, key: str | None, path: str, body: dict[str, Any] | None = None) -> Any:
    """One API request; an error answer is printed (the server's own words) and exits non-zero."""
    if not key:
        _fail("an API key is needed: pass --key or set PARLEY_API_KEY", 2)
    url = url or local_server_url()
    try:
        with httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            answer = http.request(method, path, json=body)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server at {url}: {exc}", 1)
    if answer.status_code >= 400:
        _fail(_detail(answer), 1 if answer.status_code in (401, 403, 404, 409, 429) else 2)
    return answer.json() if answer.content else None


def local_server_url() -> str:
    """The base URL of ``parley serve`` on this machine under the same settings (a wildcard bind
    address is reached on the loopback)."""
    from parley.config import get_settings

    settings = get_settings()
    host = (
        "127.0.0.1"
        if settings.host in ("", "0.0.0.0")
        else "[::1]"
        if settings.host == "::"
        else settings.host
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # a 422: which fields, and why
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return f"{answer.status_code}: {detail or answer.text[:300]}"


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {shown(message, lines=True)}")
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _participants(participants: list[dict[str, Any]]) -> Table:
    rows = [
        (
            shown(p["id"]),
            shown(p["role"]),
            shown(p["mode"]),
            shown(p["name"]),
            "yes" if p["connected"] else "invited",
        )
        for p in participants
    ]
    return listing("Participants", ("id", "role", "mode", "name", "connected"), rows)


@rooms_app.command("create")
def rooms_create(
    agent: Annotated[str, typer.Option("--agent", help="the agent (id or name): coaching, playbook, models")],
    name: Annotated[str, typer.Option(help="shown on the participants' pages")] = "",
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a coached call with an agent."""
    room = _call("POST", url, key, "/v1/rooms", {"agent": agent, "name": name})
    if as_json:
        _print_json(room)
        return
    out.print(
        f"room [bold]{shown(room['id'])}[/bold] with agent {shown(room['agent'])} "
        f"(call {shown(room['call_id'])})"
    )
    print_whole(out, f"invite its participants: parley rooms add {room['id']} --role rep")


@rooms_app.command("list")
def rooms_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """The organization's live rooms."""
    rooms = _call("GET", url, key, "/v1/rooms")["data"]
    if as_json:
        _print_json(rooms)
        return
    rows = [
        (
            shown(room["id"]),
            shown(room["name"]),
            shown(room["agent"]),
            str(sum(1 for p in room["participants"] if p["connected"])),
            shown(room["call_id"]),
        )
        for room in rooms
    ]
    columns = ("id", "name", "agent", "participants", "call")
    out.print(listing("Live rooms", columns, rows, ids=("id", "call")))


@rooms_app.command("show")
def rooms_show(
    room_id: RoomArg, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Who is in a room and how they are heard, its metrics and its hints so far."""
    room = _call("GET", url, key, _path(room_id))
    if as_json:
        _print_json(room)
        return
    out.print(f"room [bold]{shown(room['id'])}[/bold] {shown(room['name'])} — agent {shown(room['agent'])}")
    out.print(_participants(room["participants"]))
    for hint in room["hints"]:
        out.print(f"  hint \\[{shown(hint['trigger'])}] {shown(hint['text'])}")  # a bracket, not a markup tag
    talk = {role: stats.get("talk_ratio") for role, stats in room["metrics"].get("roles", {}).items()}
    if talk:
        out.print("  talk ratio: " + ", ".join(f"{shown(str(role))} {ratio}" for role, ratio in talk.items()))


@rooms_app.command("add")
def rooms_add(
    room_id: RoomArg,
    role: Annotated[str, typer.Option("--role", help="rep, customer or coach (a supervisor is a coach)")],
    mode: Annotated[str | None, typer.Option("--mode", help="speak, listen, whisper or barge")] = None,
    name: Annotated[str, typer.Option(help="shown to the others")] = "",
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite a participant: prints its single-use join token and, for reps and coaches, the page to open
    (each on a line of its own, unbroken, to copy whole)."""
    body: dict[str, Any] = {"role": role, "name": name}
    if mode is not None:
        body["mode"] = mode
    invitation = _call("POST", url, key, _path(room_id, "participants"), body)
    if as_json:
        _print_json(invitation)
        return
    out.print(
        f"{shown(invitation['role'])} [bold]{shown(invitation['participant_id'])}[/bold] "
        f"({shown(invitation['mode'])}); the token works once, until {shown(invitation['expires_at'])}"
    )
    print_whole(out, f"token: {invitation['token']}")
    if invitation["page_url"]:
        base = (url or local_server_url()).rstrip("/")  # the server the invitation came from
        print_whole(out, f"page: {base}{invitation['page_url']}")
    print_whole(out, f"socket: {invitation['ws_url']}")


@rooms_app.command("mode")
def rooms_mode(
    room_id: RoomArg,
    participant_id: ParticipantArg,
    mode: Annotated[str, typer.Argument(help="speak, listen, whisper or barge")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Switch how a participant is heard, live."""
    if mode not in MODES:
        _fail(f"mode must be one of {', '.join(MODES)}, got {mode!r}", 2)
    changed = _call("PATCH", url, key, _path(room_id, "participants", participant_id), {"mode": mode})
    out.print(f"{shown(changed['id'])} ({shown(changed['role'])}) is now in {shown(changed['mode'])} mode")


@rooms_app.command("remove")
def rooms_remove(
    room_id: RoomArg, participant_id: ParticipantArg, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None
) -> None:
    """Take a participant out of the call (or withdraw its invitation)."""
    _call("DELETE", url, key, _path(room_id, "participants", participant_id))
    out.print(f"removed {shown(participant_id)} from {shown(room_id)}")


@rooms_app.command("end")
def rooms_end(room_id: RoomArg, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None) -> None:
    """End the call for everyone; it stays on the books (parley calls show CALL_ID)."""
    room = _call("POST", url, key, _path(room_id, "end"))
    out.print(f"ended {shown(room['id'])}; the call is {shown(room['call_id'])}")

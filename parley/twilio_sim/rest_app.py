"""The local Twilio's HTTP face: Twilio's REST paths for calls (conferences and messages add theirs), and
``/sim/…`` for looking at what happened.

Shapes follow https://www.twilio.com/docs/voice/api/call-resource: form-encoded bodies, JSON answers,
Twilio's error body and codes (20001 bad parameter, 20004 method not allowed, 20404 not found).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.twilio_sim.conference import register_routes
from parley.twilio_sim.messages import register_message_routes
from parley.twilio_sim.resources import API_VERSION, RestError, SimCall, list_page, phone_number

if TYPE_CHECKING:
    from parley.twilio_sim.server import TwilioSim


class Form:
    """A form-encoded body; a name can repeat (``StatusCallbackEvent``)."""

    def __init__(self, body: bytes) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
            self._values.setdefault(key, []).append(value)

    def one(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[0] if values else None

    def many(self, name: str) -> list[str]:
        return list(self._values.get(name, []))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.one(name)
        if raw is None or raw == "":
            return default
        try:
            return min(max(int(raw), low), high)
        except ValueError as exc:
            raise RestError(400, 20001, f"{name} must be an integer, got {raw!r}") from exc


class _Resource(Protocol):
    def resource(self) -> dict[str, Any]: ...


class _Dated(_Resource, Protocol):
    date_created: datetime


_R = TypeVar("_R", bound=_Resource)
_D = TypeVar("_D", bound=_Dated)


def newest_first(
    app: FastAPI,
    sim: TwilioSim,
    path: str,
    key: str,
    every: Callable[[], Iterable[_D]],
    wanted: Callable[[_D, QueryParams], bool],
) -> None:
    """``GET`` a list of one kind of resource (calls, conferences), newest first and on one page, with
    the ones ``wanted`` by the query's filters."""

    @app.get(path)
    async def list_all(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        query = request.query_params
        newest = sorted(every(), key=lambda r: r.date_created, reverse=True)
        items = [r.resource() for r in newest if wanted(r, query)]
        return JSONResponse(list_page(key, items, request.url.path))


def fetch_and_update(
    app: FastAPI,
    sim: TwilioSim,
    path: str,
    find: Callable[[Request], _R],
    update: Callable[[_R, Form], None],
) -> None:
    """``GET`` and ``POST`` on one resource's path, as Twilio has them for each kind (a call, a
    conference, a participant): fetch it, or update it with a form and answer with what it is now.
    ``find`` reads the resource's ids from the path (an unknown one raises Twilio's 404)."""

    @app.get(path)
    async def fetch(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        return JSONResponse(find(request).resource())

    @app.post(path)
    async def change(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        resource = find(request)
        update(resource, Form(await request.body()))
        return JSONResponse(resource.resource())


def build_app(sim: TwilioSim) -> FastAPI:
    """The HTTP face of ``sim``: Twilio's REST paths, plus ``/sim/…`` for inspection."""
    app = FastAPI(title="Local Twilio (Parley)", docs_url=None, redoc_url=None, openapi_url=None)
    prefix = f"/{API_VERSION}/Accounts/{{account}}"

    @app.exception_handler(RestError)
    async def rest_error(_: Request, exc: RestError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            error = RestError(405, 20004, "Method not allowed")
        elif exc.status_code == 404:
            error = RestError(404, 20404, f"The requested resource {request.url.path} was not found")
        else:
            error = RestError(exc.status_code, exc.status_code, str(exc.detail))
        return JSONResponse(error.body(), status_code=error.status)

    @app.post(prefix + "/Calls.json")
    async def create_call(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        call = sim.create_call(Form(await request.body()))
        return JSONResponse(call.resource(), status_code=201)

    def call_wanted(call: SimCall, query: QueryParams) -> bool:
        return (
            (not query.get("To") or call.to == phone_number(query["To"]))
            and (not query.get("From") or call.from_ == phone_number(query["From"]))
            and (not query.get("Status") or call.status == query["Status"])
        )

    newest_first(app, sim, prefix + "/Calls.json", "calls", lambda: sim.calls.values(), call_wanted)

    def call_in_path(request: Request) -> SimCall:
        return sim.find_call(request.path_params["sid"], request.url.path)

    fetch_and_update(app, sim, prefix + "/Calls/{sid}.json", call_in_path, sim.update_call)

    @app.get("/sim/calls")
    async def sim_calls() -> JSONResponse:
        return JSONResponse({"calls": [call.record() for call in sim.calls.values()]})

    @app.get("/sim/calls/{sid}")
    async def sim_call(sid: str, request: Request) -> JSONResponse:
        return JSONResponse(sim.find_call(sid, request.url.path).record())

    @app.post("/sim/inbound")
    async def sim_inbound(request: Request) -> JSONResponse:
        """Place an inbound call: ``{"from": …, "to": …, "url": …, "status_callback": …}``."""
        try:
            body = await request.json()
            call = sim.place_inbound(
                str(body["from"]),
                str(body["to"]),
                str(body["url"]),
                status_callback=body.get("status_callback"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RestError(400, 20001, f"need JSON with from, to and url: {exc}") from exc
        return JSONResponse(call.resource(), status_code=201)

    register_routes(app, sim)
    register_message_routes(app, sim)
    return app

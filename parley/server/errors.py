"""How the API reports invalid input (which field and why, never the value that was sent), a store
it cannot reach, and an agent that cannot run.

FastAPI's default 422 echoes each bad ``input`` back, which would repeat a key pasted into the wrong
field (or megabytes of text) to whoever sent it and to every log on the way. A database that is down is
a 503 the client may retry, not a bare 500. A call asked for with an agent whose stored configuration no
longer loads (``BrokenAgent``, from any route that starts one) is a 409 naming the agent and how to fix
it, not a 500.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from parley.platform.agents import BrokenAgent

log = structlog.get_logger("parley.server.errors")


def _without_input(error: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in error.items() if k not in ("input", "url")}
    context = kept.get("ctx")
    if isinstance(context, dict):
        kept["ctx"] = {k: v for k, v in context.items() if k != "error"} or None
    return {k: v for k, v in kept.items() if v is not None}


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_without_input(dict(error)) for error in exc.errors()]
    return JSONResponse(
        {"detail": jsonable_encoder(errors)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


async def _store_unreachable(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not (isinstance(exc, OperationalError) or exc.connection_invalidated):
        raise exc  # a query the database refused: a bug, reported as one
    log.warning(
        "the database is unreachable", path=request.url.path, error=type(exc.__cause__ or exc).__name__
    )
    return JSONResponse(
        {"detail": "the database is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def _broken_agent(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BrokenAgent)
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(BrokenAgent, _broken_agent)
    app.add_exception_handler(DBAPIError, _store_unreachable)
    # asyncpg does not wrap a refused connection: the database is down (or restarting)
    app.add_exception_handler(ConnectionRefusedError, _store_unreachable)

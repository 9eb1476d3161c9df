"""How the API reports invalid input: which field and why, never the value that was sent.

FastAPI's default 422 echoes each bad ``input`` back, which would repeat a key pasted into the wrong
field (or megabytes of text) to whoever sent it and to every log on the way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)

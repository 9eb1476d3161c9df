"""Caps on what one HTTP request may send, enforced before any route reads it.

A body over ``max_request_body_bytes`` gets 413, whether its ``Content-Length`` says so up front or it
streams (chunked) past the cap: it is never buffered whole nor parsed. A JSON body that holds NaN,
Infinity or a number too large for a float (``1e400``) gets 422: JSON has no such values, yet Python's
parser accepts them, and one that reached a route would be stored or fail to serialize (a 500). So does
one whose arrays and objects nest more than ``MAX_BODY_NESTING`` deep: the parser recurses once per level,
and a 2 KB body of a thousand ``[`` would exhaust it inside the route, a 400 that names nothing.

The WebRTC offer endpoint speaks the live protocol, not the REST API: its refusals here are that
protocol's ``error`` message (and bad JSON a 400), as are those of the route itself.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.config import Settings
from parley.platform.documents import MAX_UPLOAD_BYTES
from parley.server.webrtc import OFFER_PATH
from parley.transports.ws_protocol import ErrorCode, error_message

_UPLOADS = re.compile(r"^/v1/agents/[^/]+/documents/?$")
UPLOAD_MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
"""A document upload's body: the file itself (``parley.platform.documents``) plus room for JSON quoting."""


MAX_BODY_NESTING = 64
"""Deepest ``[``/``{`` nesting a JSON body may have: an agent with a tool's JSON schema needs a few levels
more than the 32 free-form JSON may have inside it (``parley.inputs.MAX_JSON_DEPTH``)."""
# A JSON string (possibly unterminated: the route reports that), matched without backtracking so a hostile
# body costs linear time; brackets inside strings are text, not nesting.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\[\s\S])*+"?')
_DEPTH_STEP = np.zeros(256, np.int32)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def _nesting(body: bytes) -> int:
    """How deeply ``body``'s arrays and objects nest, in linear time and without recursion."""
    if body.count(b"[") + body.count(b"{") <= MAX_BODY_NESTING:
        return 0  # too few brackets to nest too deep: the common case, no scan
    steps = _DEPTH_STEP[np.frombuffer(_JSON_STRING.sub(b"", body), np.uint8)]
    return int(np.cumsum(steps).max(initial=0))


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _has_non_finite_number(body: bytes) -> bool:
    """Whether ``body`` is JSON with a number JSON cannot carry. Malformed JSON is the route's to report."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def _is_json(content_type: str | None) -> bool:
    """FastAPI parses a body as JSON when it says so, or says nothing."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestLimits:
    """ASGI middleware: see the module's docstring. WebSockets pass through (they have their own caps)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cap = self.max_body_bytes
        if scope.get("method") == "POST" and _UPLOADS.match(scope.get("path", "")):
            cap = max(cap, UPLOAD_MAX_BODY_BYTES)  # agent documents: files up to their own, bounded cap
        declared = headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            if not (declared.isascii() and declared.isdigit()):
                await _refuse(
                    scope,
                    receive,
                    send,
                    status.HTTP_400_BAD_REQUEST,
                    "invalid Content-Length",
                    code=ErrorCode.INVALID_MESSAGE,
                    close=True,
                )
                return
            if len(declared) > 18 or int(declared) > cap:
                await self._too_large(scope, receive, send, cap)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its body was in: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await self._too_large(scope, receive, send, cap)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _json_problem(body) if body and _is_json(headers.get("content-type")) else None
        if problem is not None:
            kind, words = problem
            await _refuse(
                scope,
                receive,
                send,
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"type": kind, "loc": ["body"], "msg": words}],
                code=ErrorCode.BAD_JSON,
                message=words,
            )
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the body is all in: what is left to hear is the disconnect

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        detail = f"the request body is larger than {cap} bytes"
        await _refuse(
            scope,
            receive,
            send,
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail,
            code=ErrorCode.MESSAGE_TOO_LARGE,
            close=True,
        )


_NOT_FINITE = "JSON numbers must be finite: NaN, Infinity and numbers as large as 1e400 are not JSON"


def _json_problem(body: bytes) -> tuple[str, str] | None:
    """The error type and words for a JSON body no route should parse, or None (malformed JSON too: the
    route reports it, naming the body). Depth first: the parser below must not run out of stack."""
    depth = _nesting(body)
    if depth > MAX_BODY_NESTING:
        return "json_too_deep", (
            f"JSON arrays and objects nest {depth} levels deep here; at most {MAX_BODY_NESTING} are accepted"
        )
    if _has_non_finite_number(body):
        return "finite_number", _NOT_FINITE
    return None


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status_code: int,
    detail: object,
    *,
    code: ErrorCode,
    message: str | None = None,
    close: bool = False,
) -> None:
    """Answer without calling the app; ``close`` when the body is left unread on the connection. The
    WebRTC offer endpoint gets ``code`` and ``message`` (default: ``detail``) instead of ``detail``."""
    headers = {"Connection": "close"} if close else None
    content: dict[str, object] = {"detail": detail}
    if scope.get("path") == OFFER_PATH:
        content = error_message(code, message or str(detail), fatal=True)
        if status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
            status_code = status.HTTP_400_BAD_REQUEST  # as the route answers other JSON it cannot read
    await JSONResponse(content, status_code=status_code, headers=headers)(scope, receive, send)


def install_request_limits(app: FastAPI, settings: Settings) -> None:
    """Cap every HTTP request's body at ``settings.max_request_body_bytes``, refusing non-JSON numbers."""
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_request_body_bytes)

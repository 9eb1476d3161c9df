"""Path and query parameters the routes share, each bounded so that no value fails deeper down (a NUL
the database cannot store, an integer its column cannot hold, a date UTC cannot express) as a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from parley.inputs import MAX_INT32, SafeStr, UtcDatetime

Ref = Annotated[SafeStr, Path(min_length=1, max_length=200, description="an id (agents: or a name)")]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
CursorQ = Annotated[SafeStr | None, Query(max_length=500, description="`next_cursor` of the previous page")]
Version = Annotated[int | None, Query(ge=1, le=MAX_INT32, description="default: the latest")]
EventId = Annotated[int | None, Query(ge=0, le=MAX_INT32, description="resume after this event id")]
When = Annotated[UtcDatetime | None, Query(description="ISO 8601; without a zone, UTC")]


def _key_given(value: object) -> object:
    """An empty (or blank: proxies and HTTP parsers strip the spaces) ``Idempotency-Key`` is a client
    bug, not "no key": taken as no key, a retried request would do its work twice."""
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError(
            "idempotency_key_empty",
            "Idempotency-Key is empty: send a key (1 to 128 printable ASCII characters) "
            "or leave the header out",
        )
    return value


IdempotencyKey = Annotated[
    str | None,
    BeforeValidator(_key_given),
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="the same key again gives back what the first request made, and does nothing again; "
        "an empty key is refused (422)",
    ),
]
"""The ``Idempotency-Key`` header, for every route that reads it: absent is no key; empty or blank is a
422 naming the header."""

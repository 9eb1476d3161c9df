"""Path and query parameters the routes share, each bounded so that no value fails deeper down (a NUL
the database cannot store, an integer its column cannot hold, a date UTC cannot express) as a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from parley.inputs import MAX_INT32, SafeStr, UtcDatetime

Ref = Annotated[SafeStr, Path(min_length=1, max_length=200, description="an id (agents: or a name)")]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
CursorQ = Annotated[SafeStr | None, Query(max_length=500, description="`next_cursor` of the previous page")]
Version = Annotated[int | None, Query(ge=1, le=MAX_INT32, description="default: the latest")]
EventId = Annotated[int | None, Query(ge=0, le=MAX_INT32, description="resume after this event id")]
When = Annotated[UtcDatetime | None, Query(description="ISO 8601; without a zone, UTC")]

"""Query helpers both dialects need: idempotent inserts and keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from parley.store.models import Base

M = TypeVar("M", bound=Base)


def _insert(session: AsyncSession, model: type[Base]) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no idempotent insert for the {dialect} dialect")


async def insert_ignore(
    session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert rows, skipping any whose ``keys`` already exist: redelivered events are harmless."""
    if rows:
        await session.execute(
            _insert(session, model).values(list(rows)).on_conflict_do_nothing(index_elements=keys)
        )


async def upsert(
    session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert rows, replacing the other columns of rows whose ``keys`` already exist."""
    if not rows:
        return
    statement = _insert(session, model).values(list(rows))
    columns = [c for c in rows[0] if c not in keys]
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={c: getattr(statement.excluded, c) for c in columns}
    )
    await session.execute(statement)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the sort value and id of its last row (newest first)."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """A cursor comes back from clients: anything but one this module encoded is ``InvalidCursor``
        here, never a failed query (a naive or out-of-range time, a NUL the database cannot take)."""
        try:
            created, ident = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            when = datetime.fromisoformat(created)
            if when.tzinfo is None or not isinstance(ident, str) or "\x00" in ident:
                raise ValueError("not a cursor of this API")
            return cls(when.astimezone(UTC), ident)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidCursor("invalid cursor") from exc


async def page_newest_first(
    session: AsyncSession,
    statement: Select[M],
    created: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[M], str | None]:
    """One page of ``statement`` ordered newest first, and the cursor of the next page (None at the end).

    Keyset pagination: pages stay consistent while new rows arrive, and cost the same however deep.
    """
    if cursor:
        after = Cursor.decode(cursor)
        statement = statement.where(
            or_(created < after.created_at, and_(created == after.created_at, ident < after.id))
        )
    rows = list(
        (await session.scalars(statement.order_by(created.desc(), ident.desc()).limit(limit + 1))).all()
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Cursor(getattr(last, created.key), getattr(last, ident.key)).encode()

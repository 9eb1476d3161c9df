"""A small Server-Sent Events parser for the tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Message:
    event: str
    id: str | None
    data: dict[str, Any]


def parse(lines: Iterable[str]) -> list[Message]:
    messages: list[Message] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields or "data" in fields:
                messages.append(
                    Message(
                        fields.get("event", "message"), fields.get("id"), json.loads(fields.get("data", "{}"))
                    )
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")
    return messages


async def messages(lines: AsyncIterator[str]) -> AsyncIterator[Message]:
    fields: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if "event" in fields or "data" in fields:
                yield Message(
                    fields.get("event", "message"), fields.get("id"), json.loads(fields.get("data", "{}"))
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")

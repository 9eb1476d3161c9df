"""A mailbox for development: an SMTP server (aiosmtpd) that keeps every message it is sent.

``parley mailbox`` runs it so the emails a local Parley sends can be read (one ``.eml`` file per message in
a folder, and a line per message on the terminal); the notification tests and the leads benchmark run it
in their own event loop to see what arrived, when, and whether anything arrived twice (by Message-ID).
It accepts any sender and recipient and relays nothing. aiosmtpd is a development dependency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float
    """``time.monotonic()`` when the message was accepted (the benchmark's clock)."""
    path: Path | None

    @property
    def message_id(self) -> str:
        return str(self.message.get("Message-ID", ""))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


class Mailbox:
    """The aiosmtpd handler: accepts each message, keeps it (in memory, and as a file in ``directory``
    if given) and tells ``on_message``."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        on_message: Callable[[ReceivedMail], None] | None = None,
    ) -> None:
        self.directory = directory
        self.on_message = on_message
        self.received: list[ReceivedMail] = []
        self._numbers = itertools.count(1)
        self._changed: asyncio.Condition | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd calls this for every message (the name is its protocol)."""
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not content:
            content = envelope.content
        message = BytesParser(policy=policy.default).parsebytes(content)
        assert isinstance(message, EmailMessage)
        path = None
        if self.directory is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.directory / f"{stamp}-{next(self._numbers):06d}.eml"
            path.write_bytes(content)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from or ""),
            rcpt_tos=[str(r) for r in envelope.rcpt_tos],
            message=message,
            received_at=time.monotonic(),
            path=path,
        )
        self.received.append(mail)
        if self.on_message is not None:
            self.on_message(mail)
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [mail.message_id for mail in self.received]

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> list[ReceivedMail]:
        """Until at least ``count`` messages arrived (when served in this event loop by ``serve``)."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


async def serve(mailbox: Mailbox, host: str = "127.0.0.1", port: int = 0, **options: Any) -> asyncio.Server:
    """Listen for SMTP in the running event loop; close the server to stop (the port can be reused at
    once). ``server.sockets[0].getsockname()[1]`` is the port bound."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(mailbox, hostname="parley-mailbox", data_size_limit=MAX_MESSAGE_BYTES, **options),
        host=host,
        port=port,
        reuse_address=True,
    )


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])

"""``parley mailbox``: a development SMTP server that keeps the emails a local Parley sends.

Run it, point the server at it (``PARLEY_SMTP_HOST=127.0.0.1 PARLEY_SMTP_PORT=8025
PARLEY_SMTP_STARTTLS=false``) and every lead email lands as an ``.eml`` file in the folder, with a line
here (through ``shown``: sender and subject are whatever the SMTP client sent). The function is a plain
Typer command; ``parley/cli.py`` registers it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from parley.commands.output import shown

if TYPE_CHECKING:
    from parley.notifications.mailbox import ReceivedMail

out = Console(highlight=False, emoji=False)
err = Console(stderr=True, emoji=False)


def mailbox(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SMTP port")] = 8025,
    directory: Annotated[
        Path, typer.Option("--dir", help="folder the messages are written to, one .eml file each")
    ] = Path(".parley/mailbox"),
) -> None:
    """Run a local SMTP server that accepts every message and keeps it (nothing is relayed)."""
    try:
        from parley.notifications.mailbox import Mailbox, serve
    except ImportError as exc:  # aiosmtpd is a development dependency
        err.print(f"[red]error:[/red] {shown(str(exc))}; install the dev extra (pip install aiosmtpd)")
        raise typer.Exit(2) from exc

    def show(mail: ReceivedMail) -> None:
        to = ", ".join(mail.rcpt_tos)
        where = f" → {mail.path}" if mail.path else ""
        out.print(shown(f"{mail.mail_from} → {to}: {mail.subject} {mail.message_id}{where}"), soft_wrap=True)

    async def run() -> None:
        try:
            server = await serve(Mailbox(directory, on_message=show), host, port)
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot listen on {shown(host)}:{port}: {shown(str(exc))}")
            raise typer.Exit(2) from exc
        out.print(f"Mailbox listening on {host}:{port}, writing to {directory}/ (Ctrl-C stops)")
        out.print(
            f"Point Parley at it: PARLEY_SMTP_HOST={host} PARLEY_SMTP_PORT={port} PARLEY_SMTP_STARTTLS=false"
        )
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())

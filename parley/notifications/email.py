"""Lead emails over SMTP (aiosmtplib): one multipart message (text and HTML) per notification.

The Message-ID is made from the notification id (``<ntf_…@parley>``), so a message sent again after a
crash (the server accepted it, the process died before writing that down) carries the same id, and the
receiver, or a test, can tell it is the same message. Failures are typed: a server that is away, slow or
answers 4xx is a ``TransientDeliveryError`` (retried), a 5xx refusal a ``PermanentDeliveryError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib
import structlog
from pydantic import SecretStr

from parley.config import Settings
from parley.notifications.errors import PermanentDeliveryError, TransientDeliveryError
from parley.notifications.templates import Rendered

log = structlog.get_logger("parley.notifications.email")

MESSAGE_ID_DOMAIN = "parley"


def message_id(notification_id: str) -> str:
    """The Message-ID of a notification's email, the same on every attempt."""
    return f"<{notification_id}@{MESSAGE_ID_DOMAIN}>"


class SmtpNotConfigured(ValueError):
    """``PARLEY_SMTP_FROM`` is not an address (the server would refuse every message)."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool
    username: str | None
    password: SecretStr | None
    sender: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """The SMTP server to use, or None while ``PARLEY_SMTP_HOST`` is unset (emails wait)."""
        if not settings.smtp_host:
            return None
        _name, address = parseaddr(settings.smtp_from)
        if "@" not in address:
            raise SmtpNotConfigured(f"PARLEY_SMTP_FROM is not an email address: {settings.smtp_from!r}")
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            timeout_s=settings.smtp_timeout_s,
        )


class EmailSender:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def compose(self, notification_id: str, to: str, rendered: Rendered) -> EmailMessage:
        """The message as it goes out: text first, HTML as the alternative mail readers prefer."""
        message = EmailMessage()
        message["Message-ID"] = message_id(notification_id)
        message["Date"] = formatdate(usegmt=True)
        message["From"] = self.config.sender
        try:
            name, address = parseaddr(to)
            if "@" not in address:
                raise ValueError(f"not an email address: {to!r}")
            user, domain = address.rsplit("@", 1)
            message["To"] = Address(display_name=name, username=user, domain=domain)
        except (ValueError, IndexError) as exc:  # the headers module refuses what is no address
            raise PermanentDeliveryError(f"invalid recipient: {exc}") from exc
        message["Subject"] = rendered.subject
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    async def send(self, notification_id: str, to: str, rendered: Rendered) -> str:
        """Hand the message to the SMTP server; returns its Message-ID once the server accepted it."""
        message = self.compose(notification_id, to, rendered)
        config = self.config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                start_tls=config.starttls,
                username=config.username,
                password=config.password.get_secret_value() if config.password is not None else None,
                timeout=config.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            error = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentDeliveryError(f"SMTP refused the recipient: {error}") from exc
            raise TransientDeliveryError(f"SMTP deferred the recipient: {error}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:  # the operator's settings, not the message
            raise TransientDeliveryError(
                f"SMTP login refused ({exc.code}); check PARLEY_SMTP_USERNAME and PARLEY_SMTP_PASSWORD"
            ) from exc
        except aiosmtplib.SMTPConnectResponseError as exc:  # the server's greeting said "not now"
            raise TransientDeliveryError(f"SMTP server unavailable: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(text) from exc
            raise TransientDeliveryError(text) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # connection refused, DNS, TLS, a timeout, the server hanging up, STARTTLS unsupported
            raise TransientDeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from exc
        return message_id(notification_id)

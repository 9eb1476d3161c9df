"""How a send fails: worth another try later, or never going to work for this message."""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification was not handed over. ``str(error)`` is what is recorded (never a secret)."""

    permanent = False


class TransientDeliveryError(DeliveryError):
    """The server was away, slow or said "try later" (SMTP 4xx, connection refused, a timeout, Twilio
    unreachable or 5xx): retried with backoff."""


class PermanentDeliveryError(DeliveryError):
    """The server refused this message for good (SMTP 5xx for the recipient, Twilio's invalid number):
    the notification fails at once."""

    permanent = True

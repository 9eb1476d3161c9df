"""Secrets kept out of error texts that reach a timeline, a log, a webhook or a caller.

A provider's error body may quote the request's credentials (a proxy that echoes its headers, a server
that repeats the ``Authorization`` it refused), and a webhook tool's error may quote a header made from a
tenant secret. Known values are replaced wherever they appear; credentials in the shapes HTTP carries them
(``Bearer …``, ``Token …``, ``"xi-api-key": "…"``, ``sk-…``) are replaced even when the value is not
known here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[secret]"
MIN_REDACTED = 6
"""Shorter values are no secret worth the name, and hiding them would garble every word they are in."""
MIN_FRAGMENT = 4
"""A text that ends in this many or more of a secret's first characters ends in a piece of that secret."""

_CREDENTIALS = (
    re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"""(?i)(["']?(?:xi-api-key|x-api-key|api[-_]?key|authorization|access[-_]?token|secret)["']?"""
        r"""\s*[:=]\s*["']?)(?!\[secret\])[^"'\s,;}]{6,}"""
    ),
    re.compile(r"\b(sk|pk|rk)(-[A-Za-z0-9_-]{12,})"),
)
_CUT_CREDENTIALS = (
    re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]+\Z"),
    re.compile(
        r"""(?i)(["']?(?:xi-api-key|x-api-key|api[-_]?key|authorization|access[-_]?token|secret)["']?"""
        r"""\s*[:=]\s*["']?)(?!\[secret\])[^"'\s,;}]+\Z"""
    ),
    re.compile(r"\b(sk|pk|rk)(-[A-Za-z0-9_-]+)\Z"),
)
"""The same shapes, shorter, at the very end of a text: a credential an excerpt was cut in (by the server
that sent it, or by code that cut before redacting) must not show its first characters."""


def without_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every one of ``secrets`` in it (as stored, or trimmed), and anything shaped like a
    credential (also cut short at the end of ``text``), replaced by ``REDACTED``."""
    values = _values(secrets)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for shapes in (_CREDENTIALS, _CUT_CREDENTIALS):
        text = shapes[0].sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
        text = shapes[1].sub(lambda m: f"{m[1]}{REDACTED}", text)
        text = shapes[2].sub(REDACTED, text)
    return text


def excerpt(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """At most ``limit`` characters from the start of ``text``, with no secret or piece of one in them.

    Secrets are replaced in the whole text *before* it is cut: cut first, a secret halved at the limit
    would no longer match and its first half would be shown. A text that ends in the start of a secret
    (``MIN_FRAGMENT`` characters or more: a cut, here or by whoever wrote the text) loses that end, and
    so does a ``REDACTED`` the cut halved.
    """
    values = _values(secrets)
    text = without_secrets(text, values)
    if len(text) > limit:
        text = text[:limit]
        marker = text.rfind("[", max(0, limit - len(REDACTED) + 1))
        if marker >= 0 and REDACTED.startswith(text[marker:]):
            text = text[:marker]
    while (piece := _secret_start(text, values)) > 0:
        text = text[:-piece]
    return text


def _values(secrets: Iterable[str]) -> set[str]:
    return {v for s in secrets for v in (s, s.strip()) if len(v) >= MIN_REDACTED}


def _secret_start(text: str, values: Iterable[str]) -> int:
    """How many of ``text``'s last characters (``MIN_FRAGMENT`` or more) start one of ``values`` (0: none)."""
    longest = 0
    for value in values:
        for size in range(min(len(value) - 1, len(text)), max(longest, MIN_FRAGMENT - 1), -1):
            if text.endswith(value[:size]):
                longest = size
                break
    return longest

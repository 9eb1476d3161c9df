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

_CREDENTIALS = (
    re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"""(?i)(["']?(?:xi-api-key|x-api-key|api[-_]?key|authorization|access[-_]?token|secret)["']?"""
        r"""\s*[:=]\s*["']?)(?!\[secret\])[^"'\s,;}]{6,}"""
    ),
    re.compile(r"\b(sk|pk|rk)(-[A-Za-z0-9_-]{12,})"),
)


def without_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every one of ``secrets`` in it (as stored, or trimmed), and anything shaped like a
    credential, replaced by ``REDACTED``."""
    values = {v for s in secrets for v in (s, s.strip()) if len(v) >= MIN_REDACTED}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _CREDENTIALS[0].sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _CREDENTIALS[1].sub(lambda m: f"{m[1]}{REDACTED}", text)
    return _CREDENTIALS[2].sub(REDACTED, text)

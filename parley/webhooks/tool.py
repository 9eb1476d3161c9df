"""Webhook tools: the agent calls a tenant's HTTP service and hears its answer.

    tools:
      - name: book_table
        kind: webhook
        url: https://api.example.com/bookings
        headers: {Authorization: booking_api_token}     # the NAME of an organization secret
        parameters: {type: object, properties: {day: {type: string}}, required: [day]}

The request is JSON (``{"tool", "arguments", "call_id"}``; a GET sends the arguments as its query
string, and signs that query as the HTTP client sends it, percent-encoded), signed like every webhook
(``signing.py``) with the organization's secret ``webhook_signing_secret``, and reaches the URL only
through the SSRF guard. A 2xx answer's JSON (or text) becomes the tool's result; anything else becomes
an error the model can put into words, quoting the start of the answer with no secret in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from parley.engine.agent import RESERVED_HEADERS, AgentConfig, ToolSettings
from parley.engine.tools import CallContext, Tool
from parley.redaction import excerpt, without_secrets
from parley.webhooks.guard import UrlPolicy, UrlRefused, guarded_client, refusal
from parley.webhooks.signing import SIGNATURE_HEADER, sign

SIGNING_SECRET = "webhook_signing_secret"
"""The organization secret webhook tools sign with (set it with ``PUT /v1/secrets/webhook_signing_secret``
or generate one with ``POST /v1/webhooks/signing-secret``)."""
ERROR_TEXT_CHARS = 200
USER_AGENT = "Parley-Webhook/1"
CONNECT_SHARE = 0.8
"""Of a tool's timeout, how long connecting may take: a port that drops packets then fails as "could not
connect", like one that refuses, before the tool's own timeout would say "timed out" (a port scan)."""


class WebhookToolError(RuntimeError):
    """What went wrong, in words the model can pass on (never a secret's value)."""


@dataclass(frozen=True, slots=True)
class WebhookContext:
    """What webhook tools need from the organization and server they run for."""

    policy: UrlPolicy
    secrets: Mapping[str, str]
    """The organization's secrets the agent's webhook tools name (``secret_names``), decrypted."""
    max_response_bytes: int = 65536
    call: CallContext | None = None
    """The call the tools run in (its id goes into every request)."""


def secret_names(agent: AgentConfig) -> set[str]:
    """The organization secrets an agent's webhook tools need resolved before its call starts."""
    names: set[str] = set()
    for tool in agent.tools:
        if tool.kind == "webhook":
            names.update(tool.headers.values())
            names.add(SIGNING_SECRET)
    return names


def webhook_tool(settings: ToolSettings, context: WebhookContext) -> Tool:
    """The agent's webhook tool; a URL or header the server refuses fails each call, in words."""
    assert settings.url is not None, "ToolSettings validation requires a url for webhook tools"
    url, method, timeout_s = settings.url, settings.method, settings.timeout_s

    async def call_webhook(arguments: dict[str, Any]) -> Any:
        try:
            return await _call(arguments)
        except WebhookToolError as exc:
            # The error is told to the model, the timeline and webhooks: a service that echoes its
            # Authorization header, or a client error quoting a header's value, must not carry a secret.
            raise WebhookToolError(without_secrets(str(exc), context.secrets.values())) from exc.__cause__

    async def _call(arguments: dict[str, Any]) -> Any:
        _check(context.policy, url)  # every call: the operator's policy may have changed since
        headers = _headers(settings, context)
        call_id = context.call.call_id if context.call is not None else ""
        target, body = _request(url, method, settings.name, arguments, call_id)
        signing_secret = _secret(context, SIGNING_SECRET)
        headers["Parley-Call-Id"] = call_id
        async with guarded_client(context.policy, timeout_s, timeout_s * CONNECT_SHARE) as client:
            try:
                request = client.build_request(method, target, content=body or None, headers=headers)
                # A GET signs its query exactly as it goes out: the HTTP client percent-encodes what the
                # configured URL left raw (``?city=München``), and the receiver verifies what it got.
                signed = body if method != "GET" else request.url.query
                request.headers[SIGNATURE_HEADER] = sign(signing_secret, signed)
                response = await client.send(request, stream=True)
                try:
                    raw = await _read_bounded(response, context.max_response_bytes)
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise WebhookToolError(f"the service could not be reached: {refusal(exc)}") from exc
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        if not response.is_success:
            # Secrets go before the cut, so none halved by it shows its first half.
            detail = excerpt(text.strip(), ERROR_TEXT_CHARS, context.secrets.values()).rstrip()
            raise WebhookToolError(
                f"the service answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
            )
        if not text.strip():
            return {"ok": True}
        try:
            return json.loads(text)
        except ValueError:
            return text.strip()

    return Tool(
        settings.name,
        settings.description,
        settings.parameters,
        call_webhook,
        timeout_s,
        settings.side_effect,
    )


def _check(policy: UrlPolicy, url: str) -> None:
    try:
        policy.check_url(url)
    except UrlRefused as exc:
        raise WebhookToolError(f"this server does not call that URL: {exc}") from exc


def _secret(context: WebhookContext, name: str) -> str:
    value = context.secrets.get(name)
    if value is None:
        raise WebhookToolError(f"the organization has no secret named {name!r}")
    return value


def _headers(settings: ToolSettings, context: WebhookContext) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    for header, secret in settings.headers.items():
        if header.lower() in RESERVED_HEADERS:
            raise WebhookToolError(f"the header {header} is set by Parley and cannot be configured")
        headers[header] = _secret(context, secret)
    return headers


def _request(url: str, method: str, tool: str, arguments: dict[str, Any], call_id: str) -> tuple[str, bytes]:
    """The URL and body to send: JSON in the body, or the arguments in the query string of a GET."""
    if method != "GET":
        document = {"tool": tool, "arguments": arguments, "call_id": call_id}
        return url, json.dumps(document, separators=(",", ":"), default=str).encode()
    params = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in arguments.items()}
    params["call_id"] = call_id
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query)), b""


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise WebhookToolError(f"the service answered more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

"""The lead pages, server-rendered (Jinja2, ``platform/templates``), for people without API keys:

- ``GET /leads/form/{org}``: the consumer lead form; its script posts to the public endpoint
  ``POST /v1/public/leads/{org}`` and shows each field's error next to that field. Only an organization
  with an active business has one: for any other, as for an unknown slug, the page is the same 404 (the
  endpoint too), so neither tells which organizations exist.
- ``GET /leads/{lead_id}/callback?b=&exp=&sig=``: the signed link of a new-lead email. It only shows a
  confirmation (mail scanners follow links: a GET never places a call); its button POSTs the same
  values to ``/leads/{lead_id}/callback``, which asks for the call-back.
- ``GET /business/{business_id}/leads?token=``: a business's leads, their status and outcome, with a
  "Request AI call" button per lead (``POST /business/{id}/leads/{lead_id}/callback``, the token in the
  form). Businesses have no accounts: the signed, expiring token is the access (``platform/links.py``).

Each page is sent with a nonce-based Content-Security-Policy (its own inline style and script only, forms
post to this server only, no framing), ``Referrer-Policy: no-referrer`` (the signed URL never leaks to a
site the page links to) and ``Cache-Control: no-store``. A token in a POST body is also what makes the
POST unforgeable from another site.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import structlog
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

import parley.platform
from parley.platform.agents import Conflict, NotFound
from parley.platform.callbacks import CallQueue, NoAgent, NoConsent
from parley.platform.lead_pages import CallbackTarget, LeadPages
from parley.platform.links import LinkRefused, verify_business, verify_callback
from parley.server.auth import PlatformDep
from parley.server.routes.params import CursorQ, Ref

log = structlog.get_logger("parley.server.lead_pages")

router = APIRouter(include_in_schema=False)

_templates = Environment(
    loader=FileSystemLoader(Path(parley.platform.__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
MAX_FORM_BYTES = 4096
PAGE_SIZE = 50
LinkValue = Annotated[str, Query(max_length=64)]
Token = Annotated[str, Query(max_length=128)]


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _templates.get_template(template).render(nonce=nonce, **context)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
                "frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _refused(message: str, status_code: int = status.HTTP_403_FORBIDDEN) -> HTMLResponse:
    return _page("lead_callback.html", status_code, state="refused", message=message, lead=None)


async def _form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each), bounded; no multipart library needed."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in parsed.items() if values}


def _queue(request: Request) -> CallQueue | None:
    """The outbound queue, when this server can place calls (Twilio configured)."""
    queue: CallQueue | None = getattr(request.app.state, "outbound", None)
    if queue is None or getattr(request.app.state, "twilio_rest", None) is None:
        return None
    return queue


ALREADY = "A call-back of this lead was asked for already; you will get its outcome by email."
NO_CALLS = "This server cannot place calls right now; please call the person yourself or try later."
REFUSALS: dict[str, str] = {
    "no_calls": NO_CALLS,
    "no_consent": "This person did not agree to be called, so our assistant will not call; reply by email.",
    "no_agent": "No AI agent is set up to call your leads back yet.",
    "no_lead": "That lead is not among this business's leads.",
    "not_queued": "The call-back could not be queued; please call the person yourself or try later.",
}
"""What the leads page says after a refused "Request AI call", by the code its redirect carries. The
page's URL names a code, never text: a link with made-up words must not show them as the page's alert."""


# --- the consumer lead form -----------------------------------------------------------------------------


NO_FORM = "There is no such form."


@router.get("/leads/form/{org}", response_class=HTMLResponse)
async def lead_form(org: Ref, platform: PlatformDep) -> HTMLResponse:
    """The form, or one 404 page (never naming the organization) whether it is unknown or takes no leads."""
    try:
        form = await LeadPages(platform.db).form(org)
    except NotFound:
        return _page("lead_callback.html", 404, state="refused", message=NO_FORM, lead=None)
    return _page("lead_form.html", form=form, endpoint=f"/v1/public/leads/{form.org_slug}")


# --- the signed call-back link of a new-lead email --------------------------------------------------------


async def _target(platform: PlatformDep, lead_id: str, b: str, exp: str, sig: str) -> CallbackTarget | str:
    """The lead and business the link names, or why the link cannot be used."""
    try:
        verify_callback(platform.settings, lead_id, b, exp, sig)
    except LinkRefused as exc:
        return str(exc)
    target = await LeadPages(platform.db).callback_target(lead_id, b)
    return target if target is not None else "this lead is no longer there"


def _window(platform: PlatformDep, target: CallbackTarget) -> str:
    zone = target.lead.time_zone
    return platform.settings.outbound_calling_window + (f" ({zone})" if zone else "")


def _callback_page(
    platform: PlatformDep, target: CallbackTarget, state: str, message: str = "", **more: Any
) -> HTMLResponse:
    lead = target.lead
    if state == "confirm" and not lead.consent_to_call:
        state, message = "blocked", f"{lead.name} did not agree to be called, so our assistant will not call."
    elif state == "confirm" and lead.status not in ("matched", "unmatched"):
        state, message = (
            "queued",
            "A call-back of this lead was asked for already; you will get its outcome by email.",
        )
    return _page(
        "lead_callback.html",
        state=state,
        message=message,
        lead=lead,
        business=target.business,
        org_name=target.org_name,
        window=_window(platform, target),
        **more,
    )


@router.get("/leads/{lead_id}/callback", response_class=HTMLResponse)
async def callback_confirm(
    lead_id: Ref, platform: PlatformDep, b: LinkValue = "", exp: LinkValue = "", sig: LinkValue = ""
) -> HTMLResponse:
    """Show what the link would do; only the page's button (a POST) asks for the call."""
    target = await _target(platform, lead_id, b, exp, sig)
    if isinstance(target, str):
        return _refused(target)
    return _callback_page(platform, target, "confirm", action=f"/leads/{lead_id}/callback", exp=exp, sig=sig)


@router.post("/leads/{lead_id}/callback", response_class=HTMLResponse)
async def callback_request(lead_id: Ref, request: Request, platform: PlatformDep) -> HTMLResponse:
    fields = await _form_fields(request)
    target = await _target(
        platform, lead_id, fields.get("b", ""), fields.get("exp", ""), fields.get("sig", "")
    )
    if isinstance(target, str):
        return _refused(target)
    queue = _queue(request)
    if queue is None:
        return _callback_page(platform, target, "blocked", NO_CALLS)
    try:
        made = await platform.callbacks.request(
            queue, target.lead.org_id, lead_id, business_id=target.business.id, requested_by="email_link"
        )
    except (NotFound, Conflict) as exc:
        return _callback_page(platform, target, "blocked", str(exc))
    refreshed = await LeadPages(platform.db).callback_target(lead_id, target.business.id) or target
    message = (
        f"Our assistant will call {target.lead.name} within calling hours ({_window(platform, target)}); "
        "you will get an email with the outcome."
        if made.created
        else ALREADY
    )
    return _callback_page(platform, refreshed, "queued", message)


# --- a business's leads page ----------------------------------------------------------------------------


def _when(expires: int) -> str:
    return datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")


@router.get("/business/{business_id}/leads", response_class=HTMLResponse)
async def business_leads(
    business_id: Ref,
    platform: PlatformDep,
    token: Token = "",
    cursor: CursorQ = None,
    queued: Annotated[str | None, Query(max_length=64)] = None,
    refused: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    try:
        expires = verify_business(platform.settings, business_id, token)
    except LinkRefused as exc:
        return _refused(str(exc))
    found = await LeadPages(platform.db).business(business_id)
    if found is None:
        return _refused("this business is no longer there", status.HTTP_404_NOT_FOUND)
    business, org_name = found
    try:
        page = await platform.leads.leads(
            business.org_id, business_id=business.id, limit=PAGE_SIZE, cursor=cursor
        )
    except ValueError:  # a damaged cursor: start from the newest
        page = await platform.leads.leads(business.org_id, business_id=business.id, limit=PAGE_SIZE)
    next_url = None
    if page.next_cursor:
        next_url = f"/business/{business.id}/leads?{urlencode({'token': token, 'cursor': page.next_cursor})}"
    flash, flash_ok = None, True
    if queued is not None:
        name = next((lead.name for lead in page.data if lead.id == queued), "the lead")
        flash = f"AI call-back of {name} queued: you will get an email with the outcome."
    elif refused is not None and refused in REFUSALS:  # an unknown code shows nothing
        flash, flash_ok = REFUSALS[refused], False
    return _page(
        "business_leads.html",
        business=business,
        org_name=org_name,
        leads=page.data,
        token=token,
        expires=_when(expires),
        next_url=next_url,
        flash=flash,
        flash_ok=flash_ok,
    )


def _refusal_code(exc: NotFound | Conflict) -> str:
    """The ``REFUSALS`` code for why a call-back was not queued (the full reason goes to the log)."""
    if isinstance(exc, NoConsent):
        return "no_consent"
    if isinstance(exc, NoAgent):
        return "no_agent"
    if isinstance(exc, NotFound):
        return "no_lead"
    return "not_queued"


@router.post("/business/{business_id}/leads/{lead_id}/callback")
async def business_callback(
    business_id: Ref, lead_id: Ref, request: Request, platform: PlatformDep
) -> Response:
    """The page's "Request AI call" button: back to the page (303) saying what happened."""
    token = (await _form_fields(request)).get("token", "")
    try:
        verify_business(platform.settings, business_id, token)
    except LinkRefused as exc:
        return _refused(str(exc))
    found = await LeadPages(platform.db).business(business_id)
    if found is None:
        return _refused("this business is no longer there", status.HTTP_404_NOT_FOUND)
    business = found[0]
    back: dict[str, str] = {"token": token}
    queue = _queue(request)
    if queue is None:
        back["refused"] = "no_calls"
    else:
        try:
            await platform.callbacks.request(
                queue, business.org_id, lead_id, business_id=business.id, requested_by="business_page"
            )
            back["queued"] = lead_id
        except (NotFound, Conflict) as exc:
            back["refused"] = _refusal_code(exc)
            log.info(
                "business page call-back refused", business_id=business.id, lead_id=lead_id, why=str(exc)
            )
    return RedirectResponse(
        f"/business/{business.id}/leads?{urlencode(back)}", status_code=status.HTTP_303_SEE_OTHER
    )

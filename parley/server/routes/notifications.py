"""``/v1/notification-templates``: an organization's own wording of lead notifications; and
``POST /v1/lead-notifications/{id}/retry`` to send a failed notification again.

A template is one of a fixed list of names (``new_lead.subject``, ``new_lead.html``, ``new_lead.txt``,
``new_lead.sms``, and the same for ``unmatched_lead`` and ``callback_outcome``); any other name is 404.
``GET`` shows the organization's template or, until it has one, the default; ``PUT`` replaces it once it
renders with sample data inside the sandbox's rules (422 says why not); ``DELETE`` goes back to the default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from parley.inputs import SafeStr
from parley.notifications.templates import (
    MAX_TEMPLATE_CHARS,
    NAMES,
    TemplateInvalid,
    TemplateStore,
    TemplateView,
    UnknownTemplate,
)
from parley.platform.leads import NotificationOut, notification_out
from parley.server.auth import Auth, PlatformDep
from parley.store.notifications import NotificationRepository
from parley.store.types import utcnow

router = APIRouter(tags=["notifications"])

NameP = Annotated[str, Path(max_length=64, description="e.g. `new_lead.html`")]
NotificationP = Annotated[str, Path(max_length=40, pattern=r"^ntf_[0-9a-f]{1,34}$")]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "no template of that name"}}


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: SafeStr = Field(max_length=MAX_TEMPLATE_CHARS, description="Jinja2 (sandboxed; see docs/leads.md)")


class TemplateOut(BaseModel):
    name: str
    body: str
    custom: bool = Field(description="false: the default, which the organization has not replaced")
    updated_at: datetime | None


def _out(view: TemplateView) -> TemplateOut:
    return TemplateOut(name=view.name, body=view.body, custom=view.custom, updated_at=view.updated_at)


def _known(name: str) -> str:
    if name not in NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no template {name!r}; templates: {', '.join(NAMES)}")
    return name


@router.get("/v1/notification-templates")
async def list_templates(principal: Auth, platform: PlatformDep) -> list[TemplateOut]:
    """Every template, the organization's own or the default."""
    return [_out(view) for view in await TemplateStore(platform.db).all(principal.org_id)]


@router.get("/v1/notification-templates/{name}", responses=_404)
async def get_template(name: NameP, principal: Auth, platform: PlatformDep) -> TemplateOut:
    return _out(await TemplateStore(platform.db).get(principal.org_id, _known(name)))


@router.put(
    "/v1/notification-templates/{name}",
    responses={
        **_404,
        422: {"description": "the template does not parse, is not allowed, or fails to render"},
    },
)
async def put_template(name: NameP, body: TemplateIn, principal: Auth, platform: PlatformDep) -> TemplateOut:
    """Replace a template; it is rendered with sample data first, and refused if that fails."""
    try:
        view = await TemplateStore(platform.db).put(principal.org_id, _known(name), body.body)
    except TemplateInvalid as exc:
        detail = [{"loc": ["body", "body"], "msg": str(exc), "type": "template_invalid"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from exc
    return _out(view)


@router.delete(
    "/v1/notification-templates/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "no such template, or the organization has none of its own"}},
)
async def delete_template(name: NameP, principal: Auth, platform: PlatformDep) -> Response:
    """Go back to the default template."""
    try:
        deleted = await TemplateStore(platform.db).delete(principal.org_id, _known(name))
    except UnknownTemplate as exc:  # pragma: no cover - _known checked it
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if not deleted:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the organization has no template {name!r} of its own"
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/lead-notifications/{notification_id}/retry", responses={404: {"description": "no such notification"}}
)
async def retry_notification(
    notification_id: NotificationP, request: Request, principal: Auth, platform: PlatformDep
) -> NotificationOut:
    """Send a failed notification again now, with a fresh set of attempts (others are left as they are):
    a lead's, or a text or email a call's agent sent (its id is in the call's ``messages``)."""
    async with platform.db.session() as session:
        row = await NotificationRepository(session).retry(principal.org_id, notification_id, utcnow())
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id!r}")
        out = notification_out(row)
    worker = getattr(request.app.state, "notifications", None)
    if worker is not None:
        worker.wake()
    return out

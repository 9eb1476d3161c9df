"""``/v1/phone-numbers``: the numbers the operator assigned to the organization, and the agent each one
answers with.

One Twilio account may carry every organization, and an inbound call goes to whoever holds its ``To``
number, so an organization routes only the numbers the operator gave it (``parley numbers assign`` on the
host). The operator's own organization (``PARLEY_DEFAULT_ORG``, the one ``PARLEY_API_KEY`` and the CLI act
for) may also take a number nobody has, which keeps a single-tenant server a one-step setup.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from parley.platform.agents import Conflict, NotFound
from parley.platform.phone import NotAssigned
from parley.platform.schemas import Page, PhoneNumberCreate, PhoneNumberOut, PhoneNumberUpdate
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import Ref

router = APIRouter(prefix="/v1/phone-numbers", tags=["phone numbers"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PhoneNumberOut,
    responses={
        403: {"description": "the number is not one of the organization's (the operator assigns numbers)"},
        404: {"description": "no such agent"},
        409: {"description": "an agent already answers the number (PATCH it)"},
    },
)
async def add_number(body: PhoneNumberCreate, principal: Auth, platform: PlatformDep) -> PhoneNumberOut:
    """Route calls to one of the organization's numbers (its voice URL at Twilio pointing at
    ``/twilio/voice``) to an agent; each call runs the agent's latest version."""
    phone = platform.phone
    route = phone.add_number if principal.org_id == platform.default_org_id else phone.route_number
    try:
        return await route(principal.org_id, body.number, body.agent, body.label)
    except NotAssigned as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("", response_model=Page[PhoneNumberOut])
async def list_numbers(principal: Auth, platform: PlatformDep) -> Page[PhoneNumberOut]:
    """The organization's numbers, oldest first (those no agent answers yet too: ``agent_id`` null)."""
    return Page[PhoneNumberOut](data=await platform.phone.numbers(principal.org_id), next_cursor=None)


@router.patch(
    "/{number_id}",
    response_model=PhoneNumberOut,
    responses={404: {"description": "no such number in the organization, or no such agent"}},
)
async def update_number(
    number_id: Ref, body: PhoneNumberUpdate, principal: Auth, platform: PlatformDep
) -> PhoneNumberOut:
    """Choose the agent that answers a number (by id, ``pn_…``, or the E.164 number; ``agent: null``:
    none, calls are refused) or change its label. The number stays the organization's."""
    try:
        return await platform.phone.update_number(principal.org_id, number_id, body)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete(
    "/{number_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "no such number"}},
)
async def remove_number(number_id: Ref, principal: Auth, platform: PlatformDep) -> Response:
    """Give a number back (by id, ``pn_…``, or the E.164 number): it stops answering, and only the
    operator can assign it again (to change its agent, PATCH it). Its calls stay on the books."""
    try:
        await platform.phone.remove_number(principal.org_id, number_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)

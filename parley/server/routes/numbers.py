"""``/v1/phone-numbers``: the organization's numbers at its carrier, and the agent each one answers with."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from parley.platform.agents import Conflict, NotFound
from parley.platform.schemas import Page, PhoneNumberCreate, PhoneNumberOut
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import Ref

router = APIRouter(prefix="/v1/phone-numbers", tags=["phone numbers"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PhoneNumberOut,
    responses={404: {"description": "no such agent"}, 409: {"description": "the number is registered"}},
)
async def add_number(body: PhoneNumberCreate, principal: Auth, platform: PlatformDep) -> PhoneNumberOut:
    """Route calls to a number (bought at Twilio, its voice URL pointing at ``/twilio/voice``) to an
    agent; each call runs the agent's latest version."""
    try:
        return await platform.phone.add_number(principal.org_id, body.number, body.agent, body.label)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("", response_model=Page[PhoneNumberOut])
async def list_numbers(principal: Auth, platform: PlatformDep) -> Page[PhoneNumberOut]:
    """The organization's numbers, oldest first."""
    return Page[PhoneNumberOut](data=await platform.phone.numbers(principal.org_id), next_cursor=None)


@router.delete(
    "/{number_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "no such number"}},
)
async def remove_number(number_id: Ref, principal: Auth, platform: PlatformDep) -> Response:
    """Stop answering a number (by id, ``pn_…``, or the E.164 number); its calls stay on the books."""
    try:
        await platform.phone.remove_number(principal.org_id, number_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)

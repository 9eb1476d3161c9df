"""``/v1/agents``: agents and their versions, and web sessions for the voice page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError

from parley.engine.agent import AgentConfig
from parley.platform.agents import BrokenAgent, Conflict, InvalidConfig, NotFound, ProviderError
from parley.platform.schemas import (
    AgentCreate,
    AgentOut,
    AgentPatch,
    AgentVersionOut,
    Page,
    SessionStart,
    WebSession,
)
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import CursorQ, Limit, Ref, Version
from parley.store.agent_use import AgentInUse
from parley.store.queries import InvalidCursor

if TYPE_CHECKING:
    from parley.server.runtime import LiveRuntime

router = APIRouter(prefix="/v1/agents", tags=["agents"])


def _warm(request: Request, org_id: str, saved: AgentOut) -> None:
    """Have this server prepare the version just saved while nobody waits for it, so its first call
    does not (``LiveRuntime.warm_saved``; the response is not held for it). A version that does not load
    is left alone: no call can run it."""
    runtime: LiveRuntime | None = getattr(request.app.state, "runtime", None)
    if runtime is not None and saved.problem is None and isinstance(saved.config, AgentConfig):
        runtime.warm_saved(org_id, saved.id, saved.config)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentOut,
    responses={409: {"description": "an agent with this name exists"}},
)
async def create_agent(
    body: AgentCreate, principal: Auth, platform: PlatformDep, request: Request
) -> AgentOut:
    """Create an agent; its configuration becomes version 1 (this server starts preparing it for calls)."""
    try:
        created = await platform.agents.create(principal.org_id, body)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ProviderError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    _warm(request, principal.org_id, created)
    return created


@router.get("", response_model=Page[AgentOut])
async def list_agents(
    principal: Auth, platform: PlatformDep, limit: Limit = 50, cursor: CursorQ = None
) -> Page[AgentOut]:
    """Agents, newest first."""
    try:
        return await platform.agents.page(principal.org_id, limit, cursor)
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get("/{agent_id}", response_model=AgentOut, responses={404: {"description": "no such agent"}})
async def get_agent(
    agent_id: Ref,
    principal: Auth,
    platform: PlatformDep,
    version: Version = None,
) -> AgentOut:
    """An agent (by id or name) at its latest version, or at ``version``."""
    try:
        return await platform.agents.get(principal.org_id, agent_id, version)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.patch(
    "/{agent_id}",
    response_model=AgentOut,
    responses={404: {"description": "no such agent"}, 409: {"description": "name taken"}},
)
async def update_agent(
    agent_id: Ref, body: AgentPatch, principal: Auth, platform: PlatformDep, request: Request
) -> AgentOut:
    """Change an agent: only what is sent changes (``config`` is merged into the latest configuration).
    A different configuration becomes a new version (this server starts preparing it for calls); calls
    keep theirs."""
    try:
        updated = await platform.agents.update(principal.org_id, agent_id, body)
    except InvalidConfig as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", "config", *error["loc"])} for error in exc.errors]
        ) from exc
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ProviderError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    _warm(request, principal.org_id, updated)
    return updated


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "no such agent"},
        409: {
            "description": "phone numbers or businesses still route to the agent (named): re-route them; "
            "or the agent is the record of the operator's YAML or Python agent"
        },
    },
)
async def delete_agent(agent_id: Ref, principal: Auth, platform: PlatformDep) -> Response:
    """Remove an agent from lists; its versions stay for the calls that used them. Refused while a
    phone number or a business still uses it, and for the record of an operator's YAML or Python agent
    (``source: file``), which changes with its file only."""
    try:
        await platform.agents.delete(principal.org_id, agent_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except (AgentInUse, Conflict) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{agent_id}/versions",
    response_model=list[AgentVersionOut],
    responses={404: {"description": "no such agent"}},
)
async def agent_versions(agent_id: Ref, principal: Auth, platform: PlatformDep) -> list[AgentVersionOut]:
    """Every version of an agent, oldest first."""
    try:
        return await platform.agents.versions(principal.org_id, agent_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post(
    "/{agent_id}/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=WebSession,
    responses={
        404: {"description": "no such agent"},
        409: {"description": "the agent's stored configuration no longer loads: fix it with a PATCH first"},
    },
)
async def start_web_session(
    agent_id: Ref, principal: Auth, platform: PlatformDep, body: SessionStart | None = None
) -> WebSession:
    """Queue a browser call with this agent's latest version; the voice page then connects its
    WebSocket with the returned ``session_id``. The optional body fills the agent's prompt variables.
    An agent whose stored configuration no longer loads (``problem`` in its listing) is a 409 naming it,
    and no call is queued."""
    metadata = body.call_metadata() if body is not None else None
    try:
        return await platform.start_web_session(principal.org_id, agent_id, metadata)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except BrokenAgent as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc

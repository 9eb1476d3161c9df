"""``/v1/agents/{id}/documents``: the documents an agent answers from (text, markdown, PDF).

Upload a file as the raw body (``Content-Type: application/pdf``, ``text/markdown`` or ``text/plain``,
``?name=`` the file name), or text as JSON ``{"name": …, "text": …, "kind": "markdown"}``. Text is read
in the Content-Type's ``charset`` (``text/plain; charset=windows-1252``; UTF-8 when none is given). A
multipart form (``curl -F``) is refused with 415 and a hint, not stored with its boundary lines as the text.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from parley.platform.agents import NotFound
from parley.platform.documents import (
    MAX_UPLOAD_BYTES,
    DocumentError,
    DocumentName,
    DocumentOut,
    DocumentText,
    check_upload_media,
)
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import Ref

router = APIRouter(prefix="/v1/agents", tags=["documents"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DocumentText.model_json_schema()},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            "text/markdown": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


_NAMES: TypeAdapter[str] = TypeAdapter(DocumentName)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@router.post(
    "/{agent_id}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        404: {"description": "no such agent"},
        409: {"description": "the agent has as many documents as it may hold"},
        413: {"description": f"over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB, too many pages or too much text"},
        415: {
            "description": "not text, markdown or PDF, a multipart form instead of the raw file, an unknown "
            "charset, or text that is not UTF-8 and declares no charset"
        },
        422: {
            "description": "no text in it, text not valid in its declared charset, a broken or "
            "password-protected PDF, or a bad name"
        },
    },
)
async def add_document(
    agent_id: Ref,
    request: Request,
    principal: Auth,
    platform: PlatformDep,
    name: Annotated[
        str | None, Query(max_length=200, description="the file name (raw uploads); replaces a namesake")
    ] = None,
) -> DocumentOut:
    """Add a document to the agent (one with the same name is replaced). Its text is extracted and
    kept; the next call of the agent searches it."""
    content_type = request.headers.get("content-type")
    data = await request.body()
    try:
        if _is_json(content_type):
            try:
                body = DocumentText.model_validate_json(data)
            except ValidationError as exc:  # the app's 422: fields named, inputs never echoed
                raise _invalid(exc, "body") from exc
            return await platform.documents.add_text(principal.org_id, agent_id, body)
        check_upload_media(content_type)  # a form gets the hint on how to send it, not a `name` complaint
        try:
            file_name = _name(name)
        except ValidationError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "`name` (the file name: not blank, without folders, line breaks or control characters; "
                "not . or ..) is required for a raw upload",
            ) from exc
        return await platform.documents.add(principal.org_id, agent_id, file_name, data, content_type)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except DocumentError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


def _name(value: str | None) -> str:
    return _NAMES.validate_python(value)


def _invalid(exc: ValidationError, *where: str) -> RequestValidationError:
    """A validation error of a body or parameter parsed here, for the app's 422 handler, which names the
    field and drops the input (it may be bytes that are no JSON, or a key sent in the wrong field)."""
    return RequestValidationError(
        [{**error, "loc": (*where, *error["loc"])} for error in exc.errors(include_url=False)]
    )


@router.get(
    "/{agent_id}/documents",
    response_model=list[DocumentOut],
    responses={404: {"description": "no such agent"}},
)
async def list_documents(agent_id: Ref, principal: Auth, platform: PlatformDep) -> list[DocumentOut]:
    """The agent's documents, oldest first (their text is not included)."""
    try:
        return await platform.documents.list(principal.org_id, agent_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete(
    "/{agent_id}/documents/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "no such agent or document"}},
)
async def remove_document(
    agent_id: Ref, document_id: Ref, principal: Auth, platform: PlatformDep
) -> Response:
    """Remove a document (by id or name); calls already running keep what they loaded."""
    try:
        await platform.documents.remove(principal.org_id, agent_id, document_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Agents' knowledge documents: upload (text, markdown, PDF), list, remove, and the search index a call uses.

The upload is tenant input: its size, page count, document count and total text are bounded, the text
is extracted once (PDF with ``pypdf``, in a worker thread) and only the text is kept. Text is read in the
``charset`` its Content-Type declares (UTF-8 when none is). The BM25 index is
built when a call's agent is loaded and reused by later calls until the agent's documents change.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import io
import unicodedata
from collections import OrderedDict
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from parley.engine.knowledge import KnowledgeIndex
from parley.inputs import SafeStr
from parley.platform.agents import NotFound
from parley.store.agents import AgentRepository
from parley.store.db import Database
from parley.store.documents import DocumentRepository
from parley.store.models import AgentDocument

log = structlog.get_logger("parley.platform.documents")

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_PDF_PAGES = 300
MAX_DOCUMENT_CHARS = 2_000_000
"""Extracted text of one document (a 2 MB PDF can hold more text than 2 MB: it is compressed)."""
MAX_DOCUMENTS_PER_AGENT = 50
MAX_AGENT_CHARS = 5_000_000
INDEX_CACHE_AGENTS = 64

Kind = Literal["text", "markdown", "pdf"]
CONTENT_TYPES: dict[Kind, str] = {"text": "text/plain", "markdown": "text/markdown", "pdf": "application/pdf"}
_SUFFIXES: dict[str, Kind] = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}


def _plain_name(value: str) -> str:
    """Refuse names that are paths or break a line: the name is shown in listings, logs and the CLI, and
    one of ``.``/``..`` or with a CR/LF (or any control character) would pass for something it is not.
    A blank one (spaces, or only invisible format characters) shows as nothing there, and cannot be told
    apart from another blank one when a document is removed by name."""
    if value in (".", ".."):
        raise PydanticCustomError("document_name", "a document name cannot be . or ..")
    if all(c.isspace() or unicodedata.category(c) == "Cf" for c in value):
        raise PydanticCustomError("document_name", "a document name cannot be blank")
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value):
        raise PydanticCustomError(
            "document_name", "a document name cannot hold control characters or line breaks"
        )
    return value


DocumentName = Annotated[
    SafeStr, Field(min_length=1, max_length=200, pattern=r"^[^/\\]+$"), AfterValidator(_plain_name)
]


class DocumentError(ValueError):
    """An upload that cannot become a document; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


_NAMES: TypeAdapter[str] = TypeAdapter(DocumentName)


def checked_name(name: str) -> str:
    """``name`` if it is a ``DocumentName``, else a ``DocumentError`` saying why: for callers that do not
    validate it themselves (``parley agents docs add --name``, or a file's own name)."""
    try:
        return _NAMES.validate_python(name)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        why = (
            "a document name cannot hold / or \\ (give the file name, without folders)"
            if error["type"] == "string_pattern_mismatch"
            else str(error["msg"])
        )
        raise DocumentError(why, 422) from exc


class DocumentOut(BaseModel):
    id: str
    agent_id: str
    name: str
    content_type: str
    size_bytes: int
    pages: int | None
    words: int
    sha256: str
    created_at: datetime


class DocumentText(BaseModel):
    """A document given as text in JSON (``POST /v1/agents/{id}/documents`` with ``application/json``)."""

    model_config = ConfigDict(extra="forbid")

    name: DocumentName
    text: SafeStr = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)  # NUL is refused, not dropped
    kind: Literal["text", "markdown"] = "text"


def document_out(document: AgentDocument) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        agent_id=document.agent_id,
        name=document.name,
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        pages=document.pages,
        words=document.words,
        sha256=document.sha256,
        created_at=document.created_at,
    )


FORM_UPLOAD_REFUSED = (
    "a multipart form upload (curl -F) is not accepted: send the file itself as the request body with "
    "its Content-Type and ?name=, e.g. curl --data-binary @faq.txt -H 'Content-Type: text/plain' "
    "'.../v1/agents/{id}/documents?name=faq.txt' (text/markdown and application/pdf work the same way)"
)


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def check_upload_media(content_type: str | None) -> None:
    """Refuse a multipart body before anything else: its boundary lines and part headers would
    otherwise be kept as the document's text (a ``.txt`` name made it look like plain text)."""
    if _media(content_type).startswith("multipart/"):
        raise DocumentError(FORM_UPLOAD_REFUSED, 415)


def kind_of(name: str, content_type: str | None, data: bytes) -> Kind:
    """What an upload is: by its bytes for PDF, else by content type, else by file name."""
    check_upload_media(content_type)
    if data.startswith(b"%PDF-"):
        return "pdf"
    media = _media(content_type)
    suffix = PurePosixPath(name).suffix.lower()
    if media == "application/pdf" or suffix == ".pdf":
        raise DocumentError("the upload says it is a PDF but is not one", 415)
    if media in ("text/markdown", "text/x-markdown"):
        return "markdown"
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if media in ("text/plain", "", "application/octet-stream"):
        return "text"
    raise DocumentError(f"unsupported document type {media!r}: upload text, markdown or PDF", 415)


_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
"""Python text codecs that are transformations, not character sets a file is written in."""
_SHOWN_CHARSET_CHARS = 40


def declared_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type (``text/plain; charset="iso-8859-1"``), unquoted;
    None when there is none."""
    for parameter in (content_type or "").split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').strip() or None
    return None


def _unknown_charset(charset: str) -> DocumentError:
    return DocumentError(
        f"unknown charset {charset[:_SHOWN_CHARSET_CHARS]!r}: declare one such as utf-8, iso-8859-1 or "
        "windows-1252",
        415,
    )


def _codec(charset: str) -> str:
    """The Python codec of a declared charset, or a 415 naming it: a file said to be in a character set
    we cannot read must not be read as another one (its text would be stored garbled)."""
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise _unknown_charset(charset) from None
    if name in _NOT_CHARSETS:
        raise _unknown_charset(charset)
    return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 byte order mark is not text


def _decoded(data: bytes, charset: str | None) -> str:
    """The text of a text upload, in its declared charset (UTF-8 when it declares none)."""
    if charset is None:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                "the document is not UTF-8 text; if it is in another encoding, declare it in the "
                "Content-Type (e.g. text/plain; charset=windows-1252)",
                415,
            ) from exc
    codec = _codec(charset)
    try:
        return data.decode(codec)
    except LookupError:  # a bytes-to-bytes codec (base64, zlib …): no character set
        raise _unknown_charset(charset) from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise DocumentError(
            f"the document is not valid {charset[:_SHOWN_CHARSET_CHARS]!r} text: byte 0x{byte} at "
            f"offset {exc.start} cannot be read in that charset",
            422,
        ) from exc


def extract_text(kind: Kind, data: bytes, charset: str | None = None) -> tuple[str, int | None]:
    """The document's text and, for a PDF, its page count (``charset`` is a text upload's declared
    one; a PDF says its own). Blocking for PDFs: run it in a thread."""
    if kind == "pdf":
        return _pdf_text(data)
    return _bounded(_decoded(data, charset)), None


def _pdf_text(data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("the PDF is password-protected", 422)
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            raise DocumentError(f"the PDF has {pages} pages; at most {MAX_PDF_PAGES} are accepted", 413)
        texts: list[str] = []
        size = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            size += len(text)
            if size > MAX_DOCUMENT_CHARS:
                raise DocumentError(_too_much_text(), 413)
            texts.append(text)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"not a readable PDF: {exc}", 422) from exc
    return _bounded("\n\n".join(texts)), pages


def _too_much_text() -> str:
    return f"the document holds more than {MAX_DOCUMENT_CHARS:,} characters of text; split it"


def _bounded(text: str) -> str:
    text = text.replace("\x00", "").strip()
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentError(_too_much_text(), 413)
    if not text:
        raise DocumentError("no text found in the document (a scanned PDF needs OCR first)", 422)
    return text


class DocumentService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._indexes: OrderedDict[tuple[str, str], tuple[tuple[tuple[str, str], ...], KnowledgeIndex]] = (
            OrderedDict()
        )

    async def _agent_id(self, repo: AgentRepository, org_id: str, ref: str) -> str:
        agent = await repo.by_ref(org_id, ref)
        if agent is None:
            raise NotFound(f"no agent {ref!r}")
        return agent.id

    async def add(
        self, org_id: str, agent_ref: str, name: str, data: bytes, content_type: str | None = None
    ) -> DocumentOut:
        """Store an uploaded file's text as a document of the agent (replacing one of the same name)."""
        name = checked_name(name)
        if len(data) > MAX_UPLOAD_BYTES:
            raise DocumentError(f"the document is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB", 413)
        if not data:
            raise DocumentError("the document is empty", 422)
        kind = kind_of(name, content_type, data)
        text, pages = await asyncio.to_thread(extract_text, kind, data, declared_charset(content_type))
        digest = hashlib.sha256(data).hexdigest()
        return await self._store(org_id, agent_ref, name, kind, text, len(data), pages, digest)

    async def add_text(self, org_id: str, agent_ref: str, body: DocumentText) -> DocumentOut:
        data = body.text.encode()
        if len(data) > MAX_UPLOAD_BYTES:
            raise DocumentError(f"the document is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB", 413)
        text = _bounded(body.text)
        digest = hashlib.sha256(data).hexdigest()
        return await self._store(org_id, agent_ref, body.name, body.kind, text, len(data), None, digest)

    async def _store(
        self,
        org_id: str,
        agent_ref: str,
        name: str,
        kind: Kind,
        text: str,
        size: int,
        pages: int | None,
        digest: str,
    ) -> DocumentOut:
        async with self.db.session() as session:
            agent_id = await self._agent_id(AgentRepository(session), org_id, agent_ref)
            repo = DocumentRepository(session)
            previous = await repo.by_name(org_id, agent_id, name)
            if previous is not None:
                await repo.delete(previous)
            count, chars = await repo.totals(org_id, agent_id)
            if count >= MAX_DOCUMENTS_PER_AGENT:
                raise DocumentError(f"an agent holds at most {MAX_DOCUMENTS_PER_AGENT} documents", 409)
            if chars + len(text) > MAX_AGENT_CHARS:
                raise DocumentError(
                    f"an agent's documents hold at most {MAX_AGENT_CHARS:,} characters of text", 413
                )
            document = await repo.add(
                org_id,
                agent_id,
                name=name,
                content_type=CONTENT_TYPES[kind],
                text=text,
                size_bytes=size,
                pages=pages,
                sha256=digest,
            )
            return document_out(document)

    async def list(self, org_id: str, agent_ref: str) -> list[DocumentOut]:
        async with self.db.session() as session:
            agent_id = await self._agent_id(AgentRepository(session), org_id, agent_ref)
            return [document_out(d) for d in await DocumentRepository(session).for_agent(org_id, agent_id)]

    async def remove(self, org_id: str, agent_ref: str, document_ref: str) -> None:
        """Remove a document by id or by name."""
        async with self.db.session() as session:
            agent_id = await self._agent_id(AgentRepository(session), org_id, agent_ref)
            repo = DocumentRepository(session)
            document = await repo.get(org_id, agent_id, document_ref) or await repo.by_name(
                org_id, agent_id, document_ref
            )
            if document is None:
                raise NotFound(f"no document {document_ref!r}")
            await repo.delete(document)

    async def index_for(self, org_id: str, agent_id: str) -> KnowledgeIndex | None:
        """The agent's search index (None without documents), rebuilt only when its documents changed."""
        key = (org_id, agent_id)
        async with self.db.session() as session:
            repo = DocumentRepository(session)
            fingerprint = await repo.fingerprint(org_id, agent_id)
            if not fingerprint:
                self._indexes.pop(key, None)
                return None
            cached = self._indexes.get(key)
            if cached is not None and cached[0] == fingerprint:
                self._indexes.move_to_end(key)
                return cached[1]
            documents = [(d.name, d.text) for d in await repo.for_agent(org_id, agent_id)]
        index = await asyncio.to_thread(KnowledgeIndex.from_documents, documents)
        self._indexes[key] = (fingerprint, index)
        self._indexes.move_to_end(key)
        while len(self._indexes) > INDEX_CACHE_AGENTS:
            self._indexes.popitem(last=False)
        log.info("knowledge index built", agent_id=agent_id, documents=len(documents), passages=len(index))
        return index

"""``parley agents docs add|list|rm``: the documents an agent answers from, from the command line."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

import typer

from parley.commands.output import listing, shown
from parley.commands.records import JsonOpt, _print_json, _run, err, out
from parley.platform.documents import MAX_UPLOAD_BYTES, DocumentError, DocumentOut
from parley.platform.runtime import Platform

docs_app = typer.Typer(
    help="Documents an agent answers from (text, markdown, PDF), searched each turn.", no_args_is_help=True
)

AgentArg = Annotated[str, typer.Argument(help="agent id or name")]


@docs_app.command("add")
def docs_add(
    agent: AgentArg,
    files: Annotated[list[Path], typer.Argument(help="text (.txt), markdown (.md) or PDF files")],
    name: Annotated[str | None, typer.Option(help="store under this name (one file only)")] = None,
    charset: Annotated[
        str | None,
        typer.Option(help="the text files' character set when it is not UTF-8 (e.g. windows-1252)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add documents to an agent; a document with the same name is replaced."""
    if name is not None and len(files) != 1:
        err.print("[red]error:[/red] --name goes with a single file")
        raise typer.Exit(2)
    uploads: list[tuple[str, bytes, str | None]] = []
    for file in files:
        if not file.is_file():
            err.print(f"[red]error:[/red] not a file: {shown(str(file))}")
            raise typer.Exit(2)
        if file.stat().st_size > MAX_UPLOAD_BYTES:
            err.print(f"[red]error:[/red] {shown(str(file))} is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
            raise typer.Exit(2)
        content_type = "text/markdown" if file.suffix.lower() in (".md", ".markdown") else None
        content_type = content_type or mimetypes.guess_type(file)[0]
        if charset is not None:  # as an upload's Content-Type says it; a PDF's own encoding wins
            content_type = f"{content_type or 'text/plain'}; charset={charset}"
        uploads.append((name or file.name, file.read_bytes(), content_type))

    async def action(platform: Platform, org_id: str) -> list[DocumentOut]:
        added: list[DocumentOut] = []
        for file_name, data, content_type in uploads:
            try:
                added.append(await platform.documents.add(org_id, agent, file_name, data, content_type))
            except DocumentError as exc:
                raise ValueError(f"{file_name}: {exc}") from exc
        return added

    added = _run(action)
    if as_json:
        _print_json(added)
        return
    for document in added:
        pages = f", {document.pages} pages" if document.pages else ""
        out.print(f"added {shown(document.name)} ({document.id}): {document.words:,} words{pages}")


@docs_app.command("list")
def docs_list(agent: AgentArg, as_json: JsonOpt = False) -> None:
    """The agent's documents."""

    async def action(platform: Platform, org_id: str) -> list[DocumentOut]:
        return await platform.documents.list(org_id, agent)

    documents = _run(action)
    if as_json:
        _print_json(documents)
        return
    if not documents:
        out.print("no documents")
        return
    rows = [
        (
            d.id,
            shown(d.name),
            d.content_type,
            f"{d.words:,}",
            str(d.pages or ""),
            d.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        for d in documents
    ]
    columns = ("id", "name", "type", "words", "pages", "added")
    out.print(listing(None, columns, rows, ids=("id", "name")))  # `docs rm` takes either


@docs_app.command("rm")
def docs_rm(agent: AgentArg, document: Annotated[str, typer.Argument(help="document id or name")]) -> None:
    """Remove a document from the agent."""

    async def action(platform: Platform, org_id: str) -> None:
        await platform.documents.remove(org_id, agent, document)

    _run(action)
    out.print(f"removed {shown(document)}")

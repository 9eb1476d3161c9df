"""``parley agents docs add|list|rm`` on the same store as the server."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tests.api.cli import run
from tests.knowledge.pdfs import pdf_with_pages


def test_documents_from_the_command_line(parley: typer.Typer, tmp_path: Path) -> None:
    assert run(parley, "agents", "create", "dentist").exit_code == 0
    faq = tmp_path / "faq.md"
    faq.write_text("## Opening hours\nWe are closed on Sundays.\n")
    prices = tmp_path / "prices.pdf"
    prices.write_bytes(pdf_with_pages(["A cleaning costs 90 dollars."]))
    added = run(parley, "agents", "docs", "add", "dentist", str(faq), str(prices))
    assert added.exit_code == 0, added.output
    assert "added faq.md" in added.stdout and "1 pages" in added.stdout

    listed = json.loads(run(parley, "agents", "docs", "list", "dentist", "--json").stdout)
    assert [(d["name"], d["content_type"]) for d in listed] == [
        ("faq.md", "text/markdown"),
        ("prices.pdf", "application/pdf"),
    ]
    assert "prices.pdf" in run(parley, "agents", "docs", "list", "dentist").stdout

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 nothing here")
    refused = run(parley, "agents", "docs", "add", "dentist", str(broken))
    assert refused.exit_code == 2 and "broken.pdf: not a readable PDF" in refused.output

    assert run(parley, "agents", "docs", "rm", "dentist", "faq.md").exit_code == 0
    gone = run(parley, "agents", "docs", "rm", "dentist", "faq.md")
    assert gone.exit_code == 1 and "no document 'faq.md'" in gone.output
    assert run(parley, "agents", "docs", "list", "nobody").exit_code == 1

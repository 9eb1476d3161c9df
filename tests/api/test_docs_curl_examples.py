"""The ``curl`` examples in the docs work as printed: one that posts JSON with ``-d`` says it is JSON
(curl otherwise sends ``application/x-www-form-urlencoded``, which every route refuses with a 422)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/webhooks.md", "docs/leads.md", "docs/coaching.md", "docs/telephony.md"]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FORM = "application/x-www-form-urlencoded"  # what curl -d sends without a Content-Type


def curl_examples(doc: str) -> list[str]:
    """Every ``curl`` command in ``doc``'s code blocks: with its continuation lines, and the lines a
    quoted body spans."""
    commands: list[str] = []
    for block in FENCE.findall((ROOT / doc).read_text(encoding="utf-8")):
        lines = iter(block.splitlines())
        for line in lines:
            if not line.strip().startswith("curl "):
                continue
            command = line.strip()
            while command.endswith("\\") or not _complete(command):
                command = command.removesuffix("\\") + " " + next(lines).strip()
            commands.append(command)
    return commands


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # a quote still open: the body goes on on the next line
        return False
    return True


def posting_json() -> list[tuple[str, str]]:
    return [(doc, c) for doc in DOCS for c in curl_examples(doc) if re.search(r"\s(-d|--data)\s+'[{\[]", c)]


def as_curl_sends(command: str) -> tuple[str, str, dict[str, str], bytes]:
    """Method, path, headers and body of the request ``command`` makes."""
    words = shlex.split(command.replace("$KEY", "KEY").replace("$PARLEY", "http://parley.test"))
    method, url, headers, body = "GET", "", {"Content-Type": FORM}, b""
    i = 1
    while i < len(words):
        word = words[i]
        if word == "-X":
            method, i = words[i + 1], i + 1
        elif word == "-H":
            name, _, value = words[i + 1].partition(":")
            headers = {k: v for k, v in headers.items() if k.lower() != name.strip().lower()}
            headers[name.strip()] = value.strip()
            i += 1
        elif word in ("-d", "--data"):
            body, i = words[i + 1].encode(), i + 1
            method = "POST" if method == "GET" else method
        else:
            url = word
        i += 1
    return method, httpx.URL(url if "://" in url else f"http://{url}").path, headers, body


def test_the_docs_have_json_examples_to_check() -> None:
    assert len(posting_json()) >= 3


@pytest.mark.parametrize(("doc", "command"), posting_json())
async def test_a_documented_json_post_is_read_as_json(
    client: httpx.AsyncClient, doc: str, command: str
) -> None:
    method, path, headers, body = as_curl_sends(command)
    headers.pop("Authorization", None)  # the client's key stands in for $KEY
    answer = await client.request(method, path, headers=headers, content=body)
    problems = answer.json().get("detail") if answer.status_code == 422 else None
    not_read = [p for p in problems or [] if isinstance(p, dict) and list(p.get("loc", [])) == ["body"]]
    assert not not_read, f"{doc}: {command}\n→ {answer.status_code} {answer.text}"

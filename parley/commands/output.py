"""What the commands print, kept whole where people copy it.

An id in a listing is what the next command needs (``parley calls show CALL_ID``), so an id column never
wraps and is never cut short: it is as wide as its longest id, and on a narrow terminal the other columns
give way (they wrap, or end in "…"). URLs, tokens and commands to paste are printed as one line that the
terminal may fold on screen (``soft_wrap``), never with line breaks of Rich's inside them.

Stored text is tenant or caller input (an agent's name, what a caller typed into a live session, a
lead's description), so it is printed through ``shown``: Rich markup in it prints literally, and its
control characters print as escapes (``\\x1b``) instead of reaching the terminal, where an escape
sequence can clear the screen, recolour or hide text, set the window title or write the clipboard
(OSC 52). ``--json`` output goes through ``safe_json``: the same data, with no raw control character.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

_OTHER_UNSAFE = "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
"""C0 controls but tab and line feed, DEL and C1 (C1's CSI and OSC act as ESC sequences do in many
terminals), the Unicode line separators, and the bidirectional embeddings, overrides and isolates that
make a name read backwards in terminals that reorder text."""
_UNSAFE_BUT_LINES = re.compile(f"[{_OTHER_UNSAFE}]")
_UNSAFE = re.compile(f"[\\t\\n{_OTHER_UNSAFE}]")
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f]")


def _visible(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, *, lines: bool = False) -> str:
    """Stored or tenant text as Rich markup that prints it as it is: markup escaped, and control
    characters written as escapes (``\\x1b``) that cannot drive the terminal. ``lines``: a field
    printed on lines of its own (a description) keeps its line breaks and tabs (CRLF as a line break).
    For a markup string or a table cell; with ``markup=False`` the escaping backslashes would show."""
    if lines:
        return escape(_UNSAFE_BUT_LINES.sub(_visible, text.replace("\r\n", "\n")))
    return escape(_UNSAFE.sub(_visible, text))


def safe_json(text: str) -> str:
    """JSON text with DEL and C1 characters written as ``\\u00XX``, the same data: pydantic's JSON (and
    ``json.dumps`` without ``ensure_ascii``) escape only C0 and leave the rest raw in strings, which is
    the only place JSON text can hold them."""
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def listing(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    ids: Collection[str] = ("id",),
) -> Table:
    """A table whose ``ids`` columns (what other commands take: ids, a phone number, a document's name)
    are shown whole at any width. Cells are Rich markup, as ``add_row`` takes them: pass stored text
    through ``shown``."""
    rows = [tuple(row) for row in rows]
    table = Table(title=title)
    for index, column in enumerate(columns):
        if column in ids:
            widest = max((Text.from_markup(row[index]).cell_len for row in rows), default=0)
            table.add_column(column, no_wrap=True, min_width=max(widest, cell_len(column)))
        else:
            table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def print_whole(console: Console, text: str) -> None:
    """One line printed as it is: no markup, emoji codes or highlighting, and no line breaks added, so a
    URL, a token or a command copied from the terminal works."""
    console.print(text, soft_wrap=True, markup=False, emoji=False, highlight=False)

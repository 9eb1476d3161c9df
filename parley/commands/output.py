"""What the commands print, kept whole where people copy it.

An id in a listing is what the next command needs (``parley calls show CALL_ID``), so an id column never
wraps and is never cut short: it is as wide as its longest id, and on a narrow terminal the other columns
give way (they wrap, or end in "…"). URLs, tokens and commands to paste are printed as one line that the
terminal may fold on screen (``soft_wrap``), never with line breaks of Rich's inside them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


def listing(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    ids: Collection[str] = ("id",),
) -> Table:
    """A table whose ``ids`` columns (what other commands take: ids, a phone number, a document's name)
    are shown whole at any width. Cells are Rich markup, as ``add_row`` takes them (escape data)."""
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

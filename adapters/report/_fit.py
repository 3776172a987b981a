"""Fitting a report table to the terminal: whole cells always, the columns that fit, the rest in a second table.

A ``Sheet`` is a table before it meets a width: its identity columns (a job and a model, say),
which every table made from it repeats, then its other columns in the order they are worth
reading. ``fit`` packs as many of those as fit the width beside the identity columns into the
first table, the next ones into a continuation table, and so on: a cell is never cut (rich would
end it with an ellipsis), a long name is never shortened. A column that wraps (free text: an
error list, an alert's detail) may break at spaces, never inside a word; every other column
is as wide as its widest cell, and only its header may break at a space. ``Layout`` says what
the user asked for: ``wide`` puts every column in one table however wide it gets; ``columns``
keeps only the named ones (by key) in every sheet that has any of them.

Widths follow rich's default table: each column takes its cell width plus one space of padding
on either side and one rule character; the table adds one more rule at its edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

_PER_COLUMN: Final = 3  # padding either side and the rule to its right
_EDGE: Final = 1  # the rule at the table's left edge


@dataclass(frozen=True)
class Column:
    """One column: its header, the key ``--columns`` names it by, how it aligns, whether its cells wrap."""

    header: str
    key: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False


@dataclass(frozen=True)
class Sheet:
    """A table's content before it meets a width: identity columns first, then the rest, one string per cell."""

    title: str
    ident: tuple[Column, ...]
    columns: tuple[Column, ...]
    rows: Sequence[tuple[str, ...]] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the columns ``--columns`` may choose (the identity columns are always shown)."""
        return tuple(c.key for c in self.columns)


@dataclass(frozen=True)
class Layout:
    """What the reader asked for: every column in one table (``wide``), or only the named ``columns``."""

    wide: bool = False
    columns: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_LAYOUT: Final = Layout()


def _words(text: str) -> list[str]:
    return text.split() or [""]


def _need(column: Column, cells: Sequence[str]) -> int:
    """The narrowest width that cuts no cell: the widest cell (a word of it, when the column wraps)."""
    header = max(cell_len(w) for w in _words(column.header))
    if column.wrap:
        return max([header, *(cell_len(w) for c in cells for w in _words(c))])
    return max([header, *(cell_len(c) for c in cells)])


def _natural(column: Column, cells: Sequence[str]) -> int:
    """The width at which nothing in the column, header included, needs to break."""
    return max([cell_len(column.header), *(cell_len(c) for c in cells)])


def _chosen(sheet: Sheet, layout: Layout) -> list[int]:
    """Indexes (into ``sheet.columns``) of the columns to show, in the order to show them."""
    if not layout.columns or not set(layout.columns) & set(sheet.keys):
        return list(range(len(sheet.columns)))
    return [sheet.keys.index(k) for k in layout.columns if k in sheet.keys]


def _groups(base: int, needs: list[int], order: list[int], width: int | None) -> list[list[int]]:
    """``order`` cut into runs that each fit ``width`` beside the identity columns (one run when unlimited)."""
    groups: list[list[int]] = []
    used = base
    for i in order:
        cost = needs[i] + _PER_COLUMN
        if not groups or (width is not None and used + cost > width and groups[-1]):
            groups.append([])
            used = base
        groups[-1].append(i)
        used += cost
    return groups or [[]]


def _widths(needs: list[int], naturals: list[int], wraps: list[bool], room: int) -> list[int]:
    """Each column's width: its need, then the room left shared out, wrapping cells first, headers next."""
    widths = list(needs)
    for wrapping_first in (True, False):
        for i, natural in enumerate(naturals):
            if room <= 0:
                return widths
            if wraps[i] == wrapping_first and widths[i] < natural:
                grant = min(room, natural - widths[i])
                widths[i] += grant
                room -= grant
    return widths


def fit(sheet: Sheet, width: int, layout: Layout = DEFAULT_LAYOUT) -> list[tuple[Table, int]]:
    """The tables ``sheet`` becomes at ``width`` columns, each with the width it needs, first to last."""
    every = (*sheet.ident, *sheet.columns)
    cells = [[row[i] for row in sheet.rows] for i in range(len(every))]
    needs = [_need(c, cells[i]) for i, c in enumerate(every)]
    naturals = [_natural(c, cells[i]) for i, c in enumerate(every)]
    n_ident = len(sheet.ident)
    base = _EDGE + sum(needs[i] + _PER_COLUMN for i in range(n_ident))
    order = [n_ident + i for i in _chosen(sheet, layout)]
    limit = None if layout.wide else width
    tables: list[tuple[Table, int]] = []
    for number, group in enumerate(_groups(base, needs, order, limit)):
        shown = [*range(n_ident), *group]
        used = _EDGE + sum(needs[i] + _PER_COLUMN for i in shown)
        room = sum(naturals[i] - needs[i] for i in shown) if layout.wide else width - used
        widths = _widths([needs[i] for i in shown], [naturals[i] for i in shown], [every[i].wrap for i in shown], room)
        title = sheet.title if number == 0 else f"{sheet.title} (continued)"
        table = Table(title=title, title_justify="left")
        for i, w in zip(shown, widths, strict=True):
            table.add_column(every[i].header, justify=every[i].justify, width=w, overflow="fold")
        for row in sheet.rows:
            table.add_row(*(row[i] for i in shown))
        tables.append((table, _EDGE + sum(w + _PER_COLUMN for w in widths)))
    return tables


def print_sheet(console: Console, sheet: Sheet, layout: Layout = DEFAULT_LAYOUT) -> None:
    """Print ``sheet`` as the tables that fit ``console``; a table wider than it (``--wide``) is printed uncropped."""
    for table, needed in fit(sheet, console.width, layout):
        if needed <= console.width:
            console.print(table)
            continue
        # rich renders no wider than its console: widen it for this table alone (the terminal wraps the lines).
        width = console.width
        console.width = needed
        try:
            console.print(table)
        finally:
            console.width = width


def unknown_columns(names: Sequence[str], sheets: Sequence[Sheet]) -> list[str]:
    """The names in ``names`` that no sheet has a column for."""
    known = {k for s in sheets for k in s.keys}
    return [n for n in names if n not in known]

"""`interlock report` at 80 to 160 columns over the demo's ledger: whole cells and full names at every width."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from interlock.actors.cli._report import print_report
from interlock.adapters.report._fit import Column, Layout, Sheet, fit, print_sheet

WIDTHS = (80, 100, 120, 160)
MODEL_HEADERS = ("calls", "ok", "degraded", "hedged", "cost ¢", "mean ¢", "TTFT", "TTLT", "prompt")
# A cell rich cut short: text that ends in an ellipsis just before the cell's right rule.
CUT_CELL = re.compile(r"…\s*[│┃]")


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledger a short `interlock demo` run writes (its own process, as a user runs it)."""
    where = tmp_path_factory.mktemp("demo")
    ledger = where / "demo.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "demo", "--ledger", str(ledger), "--requests", "160"],
        capture_output=True, text=True, timeout=120, cwd=where, env={**os.environ, "COLUMNS": "80"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return ledger


def names(ledger: Path) -> set[str]:
    """Every task, model and provider name the ledger's attempts hold."""
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT task, model, provider FROM attempts").fetchall()
    return {name for row in rows for name in row if name}


def rendered(ledger: Path, width: int, *, quality: bool = False, layout: Layout | None = None) -> str:
    """What the report (or the quality report) prints on a recording console ``width`` columns wide."""
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    with console.file:
        anyio.run(lambda: print_report(ledger, console=console, quality=quality, layout=layout))
    return console.export_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_no_cell_is_cut_and_every_name_is_whole(demo_ledger: Path, width: int) -> None:
    """At each width the report and the quality report cut no cell, fit the width and show every name in full."""
    text = rendered(demo_ledger, width) + rendered(demo_ledger, width, quality=True)
    cut = CUT_CELL.findall(text)
    assert len(cut) == 0, f"{len(cut)} cells cut at {width} columns"
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    words = set(re.findall(r"[\w.:-]+", text))
    assert names(demo_ledger) <= words
    for header in MODEL_HEADERS:
        assert header in text


def test_80_columns_spill_into_continuation_tables(demo_ledger: Path) -> None:
    """At 80 columns the jobs x models figures that do not fit go to a continuation table beside the same names."""
    text = rendered(demo_ledger, 80)
    assert "Jobs x models (continued)" in text
    first = text.split("Jobs x models (continued)")[0]
    assert "TTLT" not in first.split("Jobs x models")[1]  # the last figures are in a continuation


def test_160_columns_and_more_show_everything_in_one_table(demo_ledger: Path) -> None:
    """From 160 columns each table is one table: no continuation."""
    text = rendered(demo_ledger, 160) + rendered(demo_ledger, 160, quality=True)
    assert "(continued)" not in text
    header_line = next(line for line in text.splitlines() if "calls" in line and "model" in line)
    for header in ("calls", "degraded", "cost ¢", "mean ¢", "TTFT", "TTLT", "prompt"):
        assert header in header_line


def test_wide_puts_every_column_in_one_table_past_the_terminal(demo_ledger: Path) -> None:
    """``--wide`` gives one table per part however narrow the console, uncut, lines longer than 80."""
    text = rendered(demo_ledger, 80, layout=Layout(wide=True))
    assert "(continued)" not in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_columns_choose_what_a_table_shows(demo_ledger: Path) -> None:
    """``--columns calls,cost`` shows those beside the names in every table that has them, in one table."""
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "report", "--ledger", str(demo_ledger),
         "--columns", "calls,cost"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    jobs = done.stdout.split("Jobs x models")[1].split("Tasks")[0]
    assert "calls" in jobs
    assert "cost ¢" in jobs
    for absent in ("degraded", "TTFT", "mean ¢", "(continued)"):
        assert absent not in jobs


def test_unknown_columns_are_refused_with_the_known_ones(demo_ledger: Path) -> None:
    """An unknown ``--columns`` key is one line naming it and listing the keys there are; exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "report", "--ledger", str(demo_ledger),
         "--columns", "calls,latency"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown column latency" in done.stderr
    assert "ttft_p95" in done.stderr


def test_a_name_longer_than_the_console_is_printed_whole() -> None:
    """A cell wider than the console alone still prints whole (uncropped), never shortened."""
    long_name = "a-model-name-that-is-much-longer-than-any-sensible-terminal-would-allow-for-one-cell-x"
    sheet = Sheet("Models", (Column("model", "model"),), (Column("calls", "calls", "right"),), [(long_name, "3")])
    console = Console(width=40, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    with console.file:
        print_sheet(console, sheet)
    text = console.export_text()
    assert long_name in text
    assert "…" not in text


def test_fit_packs_columns_in_order_and_wraps_only_at_spaces() -> None:
    """Columns join the first table in order while they fit; a wrapping column breaks between words only."""
    columns = (*(Column(f"c{i}", f"c{i}", "right") for i in range(6)), Column("notes", "notes", wrap=True))
    row = ("name", *("12345" for _ in range(6)), "alpha beta gamma delta")
    tables = fit(Sheet("T", (Column("id", "id"),), columns, [row]), 40)
    assert [[c.header for c in t.columns] for t, _ in tables] == [
        ["id", "c0", "c1", "c2", "c3"],
        ["id", "c4", "c5", "notes"],
    ]
    assert all(width <= 40 for _, width in tables)
    console = Console(width=40, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    with console.file:
        for table, _ in tables:
            console.print(table)
    text = console.export_text()
    assert "alpha" in text
    assert "gamma" in text
    assert "…" not in text


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.%-", min_size=1, max_size=12)
_CELL = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(min_value=60, max_value=200),
    wraps=st.lists(st.booleans(), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_sheet_fits_any_width_without_a_cut_cell(width: int, wraps: list[bool], data: st.DataObject) -> None:
    """Whatever the cells and the width, every table fits it and every word of every cell is printed whole."""
    columns = tuple(Column(f"h{i}", f"h{i}", wrap=wrap) for i, wrap in enumerate(wraps))
    ident = (Column("name", "name"),)
    rows = data.draw(st.lists(st.tuples(_WORD, *(_CELL for _ in columns)), min_size=1, max_size=5))
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    with console.file:
        print_sheet(console, Sheet("T", ident, columns, rows))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    printed = set(re.findall(r"[^\s│┃]+", text))
    assert {word for row in rows for cell in row for word in cell.split()} <= printed

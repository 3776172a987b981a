"""Rendering an eval: candidates side by side as rich tables, then the recommendation and its TOML.

One column per candidate, one row per figure, so the table reads at 80 columns: as many
candidates share a table as fit the console's width (three at 80), the rest follow in another.
Costs are in cents, rates as percentages, latencies in whole milliseconds (``_render``'s forms);
a missing figure is an em dash. ``eval_json`` is the ``EvalReport`` Struct as msgspec encodes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import msgspec
from rich.console import Console
from rich.table import Table

from interlock.adapters.report._render import cents, ms, pct
from interlock.policies._eval import EvalCandidate, EvalReport

_ENCODER: Final = msgspec.json.Encoder()
_DASH: Final = "—"
_LABEL_WIDTH: Final = 17
_COLUMN_WIDTH: Final = 22  # a cell wider than this folds onto a second line


def eval_json(report: EvalReport) -> bytes:
    """The report as JSON bytes: ``interlock eval --json``."""
    return _ENCODER.encode(report)


def _accepted(c: EvalCandidate) -> str:
    return f"{pct(c.accept_rate)} ({c.accepted}/{c.judged})"


def _interval(c: EvalCandidate) -> str:
    return _DASH if c.accept_rate is None else f"{pct(c.accept_low)} to {pct(c.accept_high)}"


def _cost(value: float | None) -> str:
    return _DASH if value is None else cents(value)


def _pair(low: float | None, high: float | None) -> str:
    return f"{ms(low)} / {ms(high)}"


def _failures(c: EvalCandidate) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in c.failures.items()) or _DASH


_ROWS: Final[tuple[tuple[str, Callable[[EvalCandidate], str]], ...]] = (
    ("model id", lambda c: c.model_id),
    ("calls", lambda c: f"{c.calls}" + (f" ({c.resumed} resumed)" if c.resumed else "")),
    ("accepted", _accepted),
    ("95% interval", _interval),
    ("¢ per call", lambda c: _cost(c.cost_per_call_cents)),
    ("¢ per accepted", lambda c: _cost(c.cost_per_accepted_cents)),
    ("TTFT p50/p95 ms", lambda c: _pair(c.ttft_p50_ms, c.ttft_p95_ms)),
    ("TTLT p50/p95 ms", lambda c: _pair(c.ttlt_p50_ms, c.ttlt_p95_ms)),
    ("failures", _failures),
)


def _rows(candidates: Sequence[EvalCandidate]) -> list[tuple[str, Callable[[EvalCandidate], str]]]:
    rows = list(_ROWS)
    if any(c.unjudged for c in candidates):
        rows.insert(3, ("unjudged", lambda c: str(c.unjudged)))
    if any(c.verify_cost_cents for c in candidates):
        rows.append(("¢ verifying", lambda c: cents(c.verify_cost_cents)))
    return rows


def _header(c: EvalCandidate, recommended: str | None) -> str:
    return c.model + (" ★" if c.model == recommended else "")


def groups(candidates: Sequence[EvalCandidate], width: int, recommended: str | None) -> list[list[EvalCandidate]]:
    """The candidates in order, cut into runs whose columns fit ``width`` beside the labels (one at least)."""
    rows = _rows(candidates)
    room = width - _LABEL_WIDTH - 4  # the label column's padding and the table's outer borders
    found: list[list[EvalCandidate]] = [[]]
    used = 0
    for c in candidates:
        cells = [_header(c, recommended), *(cell(c) for _, cell in rows)]
        need = min(_COLUMN_WIDTH, max(len(text) for text in cells)) + 3
        if found[-1] and used + need > room:
            found.append([])
            used = 0
        found[-1].append(c)
        used += need
    return found


def candidate_tables(candidates: Sequence[EvalCandidate], width: int, recommended: str | None) -> list[Table]:
    """The side-by-side tables, as many candidates in each as fit ``width``; the recommended one starred."""
    rows = _rows(candidates)
    tables: list[Table] = []
    for group in groups(candidates, width, recommended):
        table = Table(show_header=True, header_style="bold")
        table.add_column("", style="bold", min_width=_LABEL_WIDTH, no_wrap=True)
        for c in group:
            table.add_column(_header(c, recommended), justify="right", max_width=_COLUMN_WIDTH, overflow="fold")
        for label, cell in rows:
            table.add_row(label, *(cell(c) for c in group))
        tables.append(table)
    return tables


def render_eval(report: EvalReport, console: Console) -> None:
    """Print the candidates side by side, then the recommendation and the TOML that moves the job to it."""
    shared = ", then " + ", ".join(report.verifiers) if report.verifiers else "; an answer with neither is accepted"
    console.print(
        f"[bold]interlock eval[/bold]  job {report.task or _DASH}: {report.prompts} prompts x {report.repeat}, "
        f"{len(report.candidates)} candidates",
        highlight=False,
    )
    console.print(f"judged by each prompt's expected/schema{shared}", highlight=False)
    for table in candidate_tables(report.candidates, console.width, report.recommended):
        console.print(table)
    console.print("accept rate intervals: Wilson score, 95%", highlight=False)
    console.print(f"significantly worse: {report.test}", highlight=False)
    if report.recommended is None:
        console.print(f"[bold]no recommendation[/bold]: {report.reason}", highlight=False)
        return
    console.print(f"[bold]recommended: {report.recommended}[/bold] — {report.reason}", highlight=False)
    if report.toml:
        console.print(f"to move job {report.task or 'default'} to it, in the config:", highlight=False)
        console.print(report.toml, markup=False, highlight=False)
    else:
        job = report.task or "default"
        console.print(f"job {job} already asks {report.recommended} first: no change", highlight=False)

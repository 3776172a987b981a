"""Rendering an ``Explanation`` (``interlock explain``): a short header and one entry per model.

The header says which job, tenant and sensitivity the request was planned with (and which PII
detectors marked it), the rules that matched, the first choice and the hedge delay. The table
lists every model of the chain in the order the run would consider it: its provider with the
breaker's state, its class, ``serves`` / ``fallback`` / ``skipped``, and why — the gate or refusal
of a skipped model, or for an admitted one its worst-case cost and the budgets it would reserve
against. At 120 columns and more that is one table whose last column wraps; narrower, each
model is one line of whole cells with its reason indented below it, so it reads at 80 columns.
``explanation_json`` is the machine form: the ``Explanation`` Struct as msgspec encodes it.
"""

from __future__ import annotations

from typing import Final

import msgspec
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from interlock.policies._explain import BudgetRoom, ExplainedCandidate, Explanation

_ENCODER: Final = msgspec.json.Encoder()
_DASH: Final = "—"


def explanation_json(explanation: Explanation) -> bytes:
    """The explanation as JSON bytes: ``interlock explain --json``."""
    return _ENCODER.encode(explanation)


def _amount(value: float, unit: str) -> str:
    return f"{value / 100:,.4f} USD" if unit == "cents" else f"{value:,.0f} tokens"


def _room(room: BudgetRoom) -> str:
    if room.closed:
        return f"{room.scope}: closed today"
    return f"{room.scope}: {_amount(room.left, room.unit)} of {_amount(room.limit, room.unit)} left"


def _why(candidate: ExplainedCandidate) -> str:
    """The last column: the skip's reason and detail, or what an admitted call would cost and reserve."""
    if not candidate.admitted:
        return f"{candidate.reason}: {candidate.detail}" if candidate.detail else candidate.reason
    parts = [f"up to {candidate.max_cost_cents:.4f}¢"] if candidate.max_cost_cents else ["no metered cost"]
    parts += [_room(room) for room in candidate.budgets]
    if candidate.costlier:
        parts.append("costlier fallback, allowed by the job")
    if candidate.degrade:
        parts.append("degraded answer (max_degrade)")
    return "; ".join(parts)


def _decision(candidate: ExplainedCandidate, serves: str | None) -> Text:
    if not candidate.admitted:
        return Text("skipped", style="red")
    return Text("serves", style="bold green") if candidate.model == serves else Text("fallback", style="green")


def _provider(candidate: ExplainedCandidate) -> str:
    return f"{candidate.provider} ({candidate.breaker})" if candidate.breaker else candidate.provider


WIDE: Final = 120  # from this console width on, the chain is one table with a "why" column


def _header(e: Explanation) -> list[Text]:
    sensitivity = e.sensitivity + (f" (detected: {', '.join(e.pii_detected)})" if e.pii_detected else "")
    if e.hedge == "off" or e.hedge_delay_ms is None:
        hedge = "off"
    else:
        plural = "s" if e.max_hedges != 1 else ""
        hedge = f"{e.hedge}, after {e.hedge_delay_ms:,.0f} ms, at most {e.max_hedges} hedge{plural}"
    lines = [
        Text.assemble(("job ", "dim"), e.job or _DASH, ("  tenant ", "dim"), e.tenant,
                      ("  sensitivity ", "dim"), sensitivity),
        Text.assemble(("input ", "dim"), f"~{e.input_tokens:,} tokens", ("  first choice ", "dim"),
                      e.first_choice or _DASH, ("  pinned ", "dim"), e.pinned or _DASH),
        Text.assemble(("rules matched ", "dim"), ", ".join(e.rules) or _DASH, ("  hedge ", "dim"), hedge),
    ]  # fmt: skip
    lines += [Text.assemble(("note ", "dim"), note) for note in e.notes]
    return lines


def _table(e: Explanation) -> Table:
    """The wide form: one row per model, the reason in a last column that wraps."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right", no_wrap=True)
    for name in ("model", "class", "provider (breaker)", "decision"):
        table.add_column(name, no_wrap=True)
    table.add_column("why", overflow="fold", ratio=1, min_width=24)
    for index, c in enumerate(e.candidates, 1):
        table.add_row(str(index), c.model, c.model_class, _provider(c), _decision(c, e.serves), _why(c))
    return table


def _rows(e: Explanation, console: Console) -> None:
    """The narrow form: each model's cells on one line, whole, and its reason indented below, wrapped."""
    cells = [(str(i), c.model, c.model_class, _provider(c)) for i, c in enumerate(e.candidates, 1)]
    heads = ("#", "model", "class", "provider (breaker)")
    widths = [max(len(row[k]) for row in (heads, *cells)) for k in range(4)]

    def line(values: tuple[str, ...], last: Text) -> Text:
        padded = [values[0].rjust(widths[0]), *(v.ljust(w) for v, w in zip(values[1:], widths[1:], strict=True))]
        return Text("  ".join(padded) + "  ").append_text(last)

    console.print(line(heads, Text("decision")), style="bold")
    for row, c in zip(cells, e.candidates, strict=True):
        console.print(line(row, _decision(c, e.serves)))
        console.print(Padding(Text(_why(c), style="dim"), (0, 0, 0, widths[0] + 2)))


def render_explanation(explanation: Explanation, console: Console) -> None:
    """Print the header lines and the chain to ``console``: one table when it is wide, rows and reasons when not."""
    e = explanation
    for line in _header(e):
        console.print(line)
    if console.width >= WIDE:
        console.print(_table(e))
    else:
        _rows(e, console)
    if e.serves is None:
        console.print(Text("no model may serve this request: it would fail for the reasons above", style="bold red"))
    else:
        console.print(Text.assemble(("would be served by ", "dim"), (e.serves, "bold")))

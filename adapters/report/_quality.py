"""Rendering the quality rollup (``interlock report --quality``): a rich table and demotion flags, or JSON.

Rates show as percentages with one decimal, as in the main report; the JSON form is the
``QualityRollup`` Struct as msgspec encodes it, with rates as fractions. Unjudged verdicts (a
verifier that could not run) have their own column and never enter ``judged`` or ``accept %``:
a model with nothing judged shows a dash for its rate.
"""

from __future__ import annotations

from typing import Final

import msgspec
from rich.console import Console
from rich.table import Table

from interlock.adapters.report._render import pct, utc
from interlock.policies._quality import QualityRollup

_ENCODER: Final = msgspec.json.Encoder()
_DASH: Final = "—"


def quality_json(rollup: QualityRollup) -> bytes:
    """The quality rollup as JSON bytes: the machine-readable form of ``--quality --json``."""
    return _ENCODER.encode(rollup)


def _models_table(rollup: QualityRollup) -> Table:
    flagged = {(d.task, d.model) for d in rollup.demotions}
    table = Table(title="Verdicts by job and model", title_justify="left")
    table.add_column("task")
    table.add_column("model")
    for name in ("judged", "accepted", "accept %", "unjudged"):
        table.add_column(name, justify="right")
    table.add_column("rejects by verifier")
    table.add_column("flag")
    for s in rollup.models:
        rejects = ", ".join(f"{name} {count}" for name, count in s.rejects_by_verifier.items()) or _DASH
        table.add_row(
            s.task or _DASH,
            s.model or _DASH,
            str(s.judged),
            str(s.accepted),
            pct(s.accept_rate),
            str(s.unjudged),
            rejects,
            "demote?" if (s.task, s.model) in flagged else "",
        )
    return table


def _demotions_table(rollup: QualityRollup) -> Table:
    table = Table(title="Demotion candidates", title_justify="left")
    for name in ("task", "model", "accept %", "better model", "its accept %", "difference", "z", "p"):
        table.add_column(name, justify="left" if "model" in name or name == "task" else "right")
    for d in rollup.demotions:
        table.add_row(
            d.task or _DASH,
            d.model,
            f"{pct(d.accept_rate)} of {d.judged}",
            d.better_model,
            f"{pct(d.better_accept_rate)} of {d.better_judged}",
            f"{d.difference * 100:+.1f} pts",
            f"{d.z:.2f}",
            f"{d.p_value:.3g}",
        )
    return table


def render_quality(rollup: QualityRollup, console: Console) -> None:
    """Print the quality report: a summary line, the verdict table, then demotion flags (or that there are none)."""
    window = f"since {utc(rollup.since)}" if rollup.since is not None else "all records"
    s = rollup.settings
    console.print(
        f"interlock quality, {window} until {utc(rollup.generated_at)}: {rollup.judged} judged attempts"
        + (f", {rollup.unjudged} unjudged (a verifier could not run)" if rollup.unjudged else "")
        + (f", {rollup.unparsed} with an unreadable verdict" if rollup.unparsed else "")
    )
    if not rollup.models:
        console.print("No judged attempts in this window.")
        return
    console.print(_models_table(rollup))
    rule = (
        f"at least {s.min_judged} judged each, {s.margin * 100:.0f} points apart, "
        f"significant at {s.confidence * 100:g}%"
    )
    if rollup.demotions:
        console.print(_demotions_table(rollup))
        console.print(f"A model is flagged when another model of its task beats it: {rule}.")
    else:
        console.print(f"No demotion candidates ({rule}).")

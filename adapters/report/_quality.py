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

from interlock.adapters.report._fit import DEFAULT_LAYOUT, Column, Layout, Sheet, print_sheet
from interlock.adapters.report._render import pct, utc
from interlock.policies._quality import DemotionCandidate, QualityRollup, QualityStats

_ENCODER: Final = msgspec.json.Encoder()
_DASH: Final = "—"


def quality_json(rollup: QualityRollup) -> bytes:
    """The quality rollup as JSON bytes: the machine-readable form of ``--quality --json``."""
    return _ENCODER.encode(rollup)


_TASK: Final = Column("task", "task")
_MODEL: Final = Column("model", "model")


def verdicts_sheet(rollup: QualityRollup) -> Sheet:
    """Verdicts by job and model: judged, accepted, the accept rate, unjudged, rejects by verifier, the flag."""
    flagged = {(d.task, d.model) for d in rollup.demotions}
    columns = (
        Column("judged", "judged", "right"), Column("accepted", "accepted", "right"),
        Column("accept %", "accept_rate", "right"), Column("unjudged", "unjudged", "right"),
        Column("flag", "flag"), Column("rejects by verifier", "rejects_by_verifier", wrap=True),
    )  # fmt: skip

    def row(s: QualityStats) -> tuple[str, ...]:
        return (
            s.task or _DASH, s.model or _DASH, str(s.judged), str(s.accepted), pct(s.accept_rate), str(s.unjudged),
            "demote?" if (s.task, s.model) in flagged else "",
            ", ".join(f"{name} {count}" for name, count in s.rejects_by_verifier.items()) or _DASH,
        )  # fmt: skip

    rows = [row(s) for s in rollup.models]
    return Sheet("Verdicts by job and model", (_TASK, _MODEL), columns, rows)


def demotions_sheet(rollup: QualityRollup) -> Sheet:
    """Demotion candidates: each flagged model beside the better model of its task, and the test's figures."""
    columns = (
        Column("accept %", "accept_rate", "right"), Column("better model", "better_model"),
        Column("its accept %", "better_accept_rate", "right"), Column("difference", "difference", "right"),
        Column("z", "z", "right"), Column("p", "p", "right"),
    )  # fmt: skip

    def row(d: DemotionCandidate) -> tuple[str, ...]:
        return (
            d.task or _DASH, d.model, f"{pct(d.accept_rate)} of {d.judged}", d.better_model,
            f"{pct(d.better_accept_rate)} of {d.better_judged}", f"{d.difference * 100:+.1f} pts",
            f"{d.z:.2f}", f"{d.p_value:.3g}",
        )  # fmt: skip

    rows = [row(d) for d in rollup.demotions]
    return Sheet("Demotion candidates", (_TASK, _MODEL), columns, rows)


def quality_sheets(rollup: QualityRollup) -> list[Sheet]:
    """Both tables of the quality report (empty ones included): what ``--columns`` chooses from."""
    return [verdicts_sheet(rollup), demotions_sheet(rollup)]


def render_quality(rollup: QualityRollup, console: Console, layout: Layout = DEFAULT_LAYOUT) -> None:
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
    print_sheet(console, verdicts_sheet(rollup), layout)
    rule = (
        f"at least {s.min_judged} judged each, {s.margin * 100:.0f} points apart, "
        f"significant at {s.confidence * 100:g}%"
    )
    if rollup.demotions:
        print_sheet(console, demotions_sheet(rollup), layout)
        console.print(f"A model is flagged when another model of its task beats it: {rule}.")
    else:
        console.print(f"No demotion candidates ({rule}).")

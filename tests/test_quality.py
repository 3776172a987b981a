"""The quality rollup: verdict strings, accept rates per (task, model), the demotion rule at its edges, rendering."""

from __future__ import annotations

import io
import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from interlock._records import AttemptRecord
from interlock.adapters.report._quality import quality_json, render_quality
from interlock.policies._quality import (
    QualityRollup,
    QualitySettings,
    parse_verdict_string,
    quality_rollup,
    two_proportion_z,
    two_sided_p,
    verdict_string,
)
from interlock.policies._verify import Verdict

NOW = 1_700_000_000.0


def att(
    i: int, verdict: str | None, *, model: str = "m1", task: str = "extract", ts: float | None = None
) -> AttemptRecord:
    """An attempt record ``r<i>`` of ``task`` by ``model`` carrying ``verdict``, at ``NOW - 100 + i`` by default."""
    return AttemptRecord(
        request_id=f"r{i}", attempt=0, ts=NOW - 100 + i if ts is None else ts, tenant="acme", caller="api",
        task=task, model_class="fast", model=model, provider="openai", outcome="ok", verdict=verdict,
    )  # fmt: skip


def judged(model: str, accepted: int, total: int, *, task: str = "extract") -> list[AttemptRecord]:
    """``total`` judged attempts of ``model``, the first ``accepted`` of them accepted."""
    verdicts = ["accept:schema"] * accepted + ["reject:schema:$.total: missing"] * (total - accepted)
    return [att(i, v, model=model, task=task, ts=NOW - i) for i, v in enumerate(verdicts)]


# -- verdict strings -----------------------------------------------------------------------------


def test_verdict_string_examples() -> None:
    """Accepts drop the reason, rejects keep it verbatim, and colons in a verifier name are escaped."""
    assert verdict_string(Verdict(True, "fine", "schema")) == "accept:schema"
    assert verdict_string(Verdict(False, "bad: $.a", "reviewer:llama3:8b")) == "reject:reviewer%3Allama3%3A8b:bad: $.a"
    expected = Verdict(False, "bad: $.a", "reviewer:llama3:8b")
    assert parse_verdict_string("reject:reviewer%3Allama3%3A8b:bad: $.a") == expected
    assert parse_verdict_string("accept:100%25") == Verdict(True, "", "100%")


@given(accepted=st.booleans(), judged=st.booleans(), reason=st.text(), verifier=st.text())
def test_verdict_string_round_trip(accepted: bool, judged: bool, reason: str, verifier: str) -> None:
    """Every reject and unjudged verdict round-trips exactly; every accept with its reason emptied."""
    verdict = Verdict(accepted, "" if accepted else reason, verifier, judged=judged or accepted)
    assert parse_verdict_string(verdict_string(verdict)) == verdict


def test_unjudged_verdict_strings() -> None:
    """An unjudged verdict has its own head word, its verifier escaped and its reason kept."""
    verdict = Verdict(False, "no reviewer of class 'flagship' may serve", "reviewer:big", judged=False)
    assert verdict_string(verdict) == "unjudged:reviewer%3Abig:no reviewer of class 'flagship' may serve"
    assert parse_verdict_string("unjudged:reviewer:down") == Verdict(False, "down", "reviewer", judged=False)


@pytest.mark.parametrize(
    "text", ["pass", "fail", "accept", "reject:schema", "unjudged:schema", "accept:a:b", "ACCEPT:schema", ""]
)
def test_parse_verdict_string_rejects_other_strings(text: str) -> None:
    """Strings not in the accept/reject form raise ValueError."""
    with pytest.raises(ValueError, match="not a verdict string"):
        parse_verdict_string(text)


# -- rollup --------------------------------------------------------------------------------------


def test_rollup_worked_example() -> None:
    """Per (task, model): judged, accepted, rate, rejects by verifier; unjudged, out-of-window, legacy rows aside."""
    rows = [
        att(1, "accept:schema"),
        att(2, "reject:schema:$.total: missing"),
        att(3, "reject:reviewer%3Ajudge:wrong date"),
        att(4, "accept:schema+reviewer%3Ajudge"),
        att(5, None),  # not judged
        att(6, "pass"),  # legacy verdict text: counted as unparsed
        att(7, "accept:schema", ts=NOW - 5000),  # before the window
        att(8, "accept:schema", ts=NOW + 1),  # after now
        att(9, "reject:schema:bad", model="m2"),
        att(10, "accept:schema", task="chat"),
    ]
    result = quality_rollup(rows, now=NOW, since=NOW - 1000)
    assert (result.judged, result.unparsed, result.since, result.generated_at) == (6, 1, NOW - 1000, NOW)
    summary = [(s.task, s.model, s.judged, s.accepted, s.accept_rate) for s in result.models]
    assert summary == [("chat", "m1", 1, 1, 1.0), ("extract", "m1", 4, 2, 0.5), ("extract", "m2", 1, 0, 0.0)]
    assert result.models[1].rejects_by_verifier == {"reviewer:judge": 1, "schema": 1}
    assert result.demotions == ()
    assert quality_rollup(rows, now=NOW).judged == 7


def test_unjudged_verdicts_stay_out_of_judged_counts_and_rates() -> None:
    """Unjudged verdicts (and legacy rejects of a verifier that could not run) are counted apart, never as rejects."""
    rows = [
        att(1, "accept:schema"),
        att(2, "unjudged:reviewer:verifier could not run: task default: every candidate failed"),
        att(3, "reject:reviewer:verifier failed: task default: every candidate failed"),  # legacy text
        att(4, "reject:reviewer:no reviewer from a lab other than 'openai'"),  # legacy text
        att(5, "reject:schema:$.total: missing"),
        att(6, "unjudged:reviewer:down", model="m2"),
    ]
    result = quality_rollup(rows, now=NOW)
    assert (result.judged, result.unjudged) == (2, 4)
    summary = [(s.model, s.judged, s.accepted, s.accept_rate, s.unjudged, s.rejects_by_verifier) for s in result.models]
    assert summary == [("m1", 2, 1, 0.5, 3, {"schema": 1}), ("m2", 0, 0, None, 1, {})]


def test_a_reviewer_outage_demotes_nobody() -> None:
    """Twenty reviews that could not run are not twenty rejects: the model they were about is not flagged."""
    outage = [att(i, "unjudged:reviewer:down", model="weak", ts=NOW - 50 - i) for i in range(20)]
    rows = judged("weak", 17, 20) + outage + judged("strong", 17, 20)
    result = quality_rollup(rows, now=NOW)
    assert result.demotions == ()
    weak = next(s for s in result.models if s.model == "weak")
    assert (weak.judged, weak.unjudged, weak.accept_rate) == (20, 20, pytest.approx(0.85))
    only_unjudged = quality_rollup(outage + judged("strong", 17, 20), now=NOW)
    assert only_unjudged.demotions == ()


def test_two_proportion_z_by_hand() -> None:
    """The pooled z of 11/20 vs 17/20 is 0.3 / sqrt(0.7 * 0.3 * 0.1), and its two-sided p matches."""
    z = two_proportion_z(11, 20, 17, 20)
    assert z == pytest.approx(0.3 / math.sqrt(0.021))
    assert two_sided_p(1.959963984540054) == pytest.approx(0.05)
    assert two_proportion_z(20, 20, 30, 30) is None
    assert two_proportion_z(0, 0, 3, 5) is None
    assert QualitySettings().z_critical == pytest.approx(1.959964)


def test_demotion_flagged_when_all_three_conditions_hold() -> None:
    """11/20 vs 17/20: enough judged calls, 30 points apart, z = 2.07 > 1.96: the weaker model is flagged."""
    result = quality_rollup(judged("weak", 11, 20) + judged("strong", 17, 20), now=NOW)
    (flag,) = result.demotions
    assert (flag.task, flag.model, flag.judged) == ("extract", "weak", 20)
    assert (flag.better_model, flag.better_judged) == ("strong", 20)
    assert flag.accept_rate == pytest.approx(0.55)
    assert flag.better_accept_rate == pytest.approx(0.85)
    assert flag.difference == pytest.approx(0.3)
    assert flag.z == pytest.approx(2.0702, abs=1e-4)
    assert flag.p_value == pytest.approx(0.0384, abs=1e-4)


def test_demotion_needs_min_judged_on_both_sides() -> None:
    """10/19 vs 17/20 is flagged only when min_judged allows 19 judged calls."""
    rows = judged("weak", 10, 19) + judged("strong", 17, 20)
    assert quality_rollup(rows, now=NOW).demotions == ()
    assert [d.model for d in quality_rollup(rows, now=NOW, min_judged=19).demotions] == ["weak"]
    reversed_sizes = judged("weak", 11, 20) + judged("strong", 18, 19)
    assert quality_rollup(reversed_sizes, now=NOW).demotions == ()


def test_demotion_margin_edge() -> None:
    """Over 1000 calls each, 80% vs 95% (a margin of exactly 0.15) is flagged, 80% vs 94.9% is not."""
    at_margin = quality_rollup(judged("weak", 800, 1000) + judged("strong", 950, 1000), now=NOW)
    assert [d.model for d in at_margin.demotions] == ["weak"]
    below = quality_rollup(judged("weak", 800, 1000) + judged("strong", 949, 1000), now=NOW)
    assert below.demotions == ()


def test_demotion_needs_significance() -> None:
    """12/20 vs 17/20 is 25 points apart but z = 1.77 < 1.96: not flagged at 95%, flagged at 90% (1.645)."""
    rows = judged("weak", 12, 20) + judged("strong", 17, 20)
    assert quality_rollup(rows, now=NOW).demotions == ()
    (flag,) = quality_rollup(rows, now=NOW, confidence=0.90).demotions
    assert flag.z == pytest.approx(0.25 / math.sqrt(0.725 * 0.275 * 0.1))


def test_equal_perfect_rates_are_never_flagged() -> None:
    """Two models at 100% have no z (pooled p = 1), so nothing is flagged even with a zero margin."""
    rows = judged("a", 20, 20) + judged("b", 30, 30)
    assert quality_rollup(rows, now=NOW, margin=0.0).demotions == ()


def test_demotion_names_the_best_model_and_stays_within_a_task() -> None:
    """With two better models the flag names the higher one; models of other tasks are never compared."""
    rows = (
        judged("weak", 5, 40)
        + judged("good", 30, 40)
        + judged("best", 38, 40)
        + judged("elsewhere", 40, 40, task="chat")
        + judged("weak", 5, 40, task="chat2")
    )
    result = quality_rollup(rows, now=NOW)
    assert [(d.task, d.model, d.better_model) for d in result.demotions] == [
        ("extract", "good", "best"),
        ("extract", "weak", "best"),
    ]


def test_quality_rollup_rejects_bad_settings() -> None:
    """A zero min_judged, a margin outside [0, 1] or a confidence outside (0, 1) is refused."""
    for bad in ({"min_judged": 0}, {"margin": 1.5}, {"confidence": 1.0}):
        with pytest.raises(ValueError, match="min_judged must be"):
            quality_rollup([], now=NOW, **bad)


# -- rendering -----------------------------------------------------------------------------------


def rendered(result: QualityRollup) -> str:
    """What render_quality prints, on a wide console without colour."""
    out = io.StringIO()
    render_quality(result, Console(file=out, width=200, no_color=True))
    return out.getvalue()


def test_render_quality_table_and_flags() -> None:
    """The rich report shows rates per model, marks the flagged one and lists its better model."""
    result = quality_rollup(judged("weak", 11, 20) + judged("strong", 17, 20) + [att(99, "fail")], now=NOW)
    text = rendered(result)
    assert "40 judged attempts, 1 with an unreadable verdict" in text
    assert "55.0%" in text
    assert "85.0%" in text
    assert "schema 9" in text
    assert "demote?" in text
    assert "Demotion candidates" in text
    assert "+30.0 pts" in text
    assert "at least 20 judged each, 15 points apart, significant at 95%" in text


def test_render_quality_shows_unjudged_apart() -> None:
    """Unjudged verdicts get their own column and summary count; a model with nothing judged shows no rate."""
    text = rendered(quality_rollup([att(1, "unjudged:reviewer:down"), att(2, "unjudged:reviewer:down")], now=NOW))
    assert "0 judged attempts, 2 unjudged (a verifier could not run)" in text
    assert "unjudged" in text
    assert "0.0%" not in text
    assert "—" in text


def test_render_quality_without_flags_or_records() -> None:
    """An unflagged report says so; an empty window says there is nothing judged."""
    assert "No demotion candidates" in rendered(quality_rollup(judged("a", 5, 10), now=NOW))
    assert "No judged attempts in this window." in rendered(quality_rollup([], now=NOW))


def test_quality_json_round_trips() -> None:
    """The JSON form decodes back into the same QualityRollup."""
    result = quality_rollup(judged("weak", 11, 20) + judged("strong", 17, 20), now=NOW, since=NOW - 60)
    assert msgspec.json.decode(quality_json(result), type=QualityRollup) == result

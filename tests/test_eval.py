"""``interlock eval`` and ``door.evaluate`` on the embedded simulated fleet, and the statistics behind them.

Each door opens the embedded default config (seeded simulator) on a SQLite ledger in a temp dir;
the provider calls an eval made are counted as attempt rows in that ledger.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import anyio
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import interlock
from interlock._errors import RequestError
from interlock.actors.cli._eval import main as eval_main
from interlock.actors.cli._eval import parse_verifier
from interlock.adapters._config_file import default_config
from interlock.adapters.report._eval import render_eval
from interlock.adapters.simulator._server import Overloaded
from interlock.policies._config import parse_config
from interlock.policies._eval import (
    EvalCall,
    EvalCandidate,
    EvalPrompt,
    EvalReport,
    best_candidate,
    effective_judged,
    recommend,
    significantly_worse,
    summarize,
    toml_change,
    wilson_interval,
)
from interlock.policies._eval_input import EvalInputError, parse_prompts
from interlock.policies._verify import ReviewerVerifier, SchemaVerifier

DATA = Path(__file__).parent / "data"
PROMPTS = DATA / "eval_prompts.jsonl"
CANDIDATES = ["open", "flash", "llama_local"]  # fast simulated models with no random faults
DEFAULT_TOML = resources.files("interlock.policies").joinpath("default.toml").read_text(encoding="utf-8")


def _prompts() -> tuple[EvalPrompt, ...]:
    return parse_prompts(PROMPTS.read_text(), PROMPTS.name)


def _provider_calls(ledger: Path) -> int:
    with sqlite3.connect(ledger) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM attempts WHERE outcome != 'skipped'").fetchone()[0])


def _answered_calls(ledger: Path) -> int:
    with sqlite3.connect(ledger) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'").fetchone()[0])


def _table(report: EvalReport, width: int = 80) -> str:
    out = io.StringIO()
    render_eval(report, Console(file=out, width=width, force_terminal=False, color_system=None))
    return out.getvalue()


# -- through the door ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_eval_compares_candidates_and_moves_the_job_to_the_cheapest_not_worse(tmp_path: Path) -> None:
    """Every candidate gets every prompt; a free model that always fails is left out; the TOML names the pick."""
    ledger = tmp_path / "eval.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        assert door.simulator is not None
        door.simulator.script("sim-local-1", [Overloaded()] * 12)  # llama_local: free, but never answers
        report = await door.evaluate(_prompts(), candidates=CANDIDATES, task="cheap_bulk", concurrency=4)
    assert [c.model for c in report.candidates] == CANDIDATES
    by_name = {c.model: c for c in report.candidates}
    assert all(c.calls == 6 for c in report.candidates)
    assert by_name["flash"].accepted == by_name["open"].accepted == 5  # "wrong" expects a count the model never says
    assert by_name["flash"].failures == {"rejected": 1}
    assert by_name["llama_local"].accepted == 0
    assert by_name["llama_local"].failures == {"overloaded": 6}
    assert report.recommended == "flash"  # cheaper per accepted answer than open, as good
    assert report.toml == '[jobs.cheap_bulk]\nchain = ["flash", "fast", "open_weight"]'
    text = _table(report)
    assert all(name in text for name in CANDIDATES)
    assert 'chain = ["flash", "fast", "open_weight"]' in text
    assert max(len(line) for line in text.splitlines()) <= 80
    with sqlite3.connect(ledger) as conn:
        callers = {row[0] for row in conn.execute("SELECT DISTINCT caller FROM attempts")}
        purposes = {row[0] for row in conn.execute("SELECT DISTINCT purpose FROM attempts")}
    assert callers == {"eval"}  # the eval's rows are told apart from the job's traffic
    assert purposes == {"eval"}  # and tagged with why they were made


@pytest.mark.anyio
async def test_a_rerun_resumes_from_the_cache_without_calling_a_provider(tmp_path: Path) -> None:
    """The second run of the same eval replays every call: no new attempt row, the same figures."""
    ledger = tmp_path / "eval.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        first = await door.evaluate(_prompts(), candidates=CANDIDATES[:2], repeat=2)
    calls = _provider_calls(ledger)
    assert calls == 2 * 6 * 2
    heard: list[tuple[int, int, bool]] = []
    async with interlock.open(ledger_path=ledger) as door:
        again = await door.evaluate(
            _prompts(), candidates=CANDIDATES[:2], repeat=2,
            progress=lambda done, total, call: heard.append((done, total, call.resumed)),
        )  # fmt: skip
    assert heard == [(n, 24, True) for n in range(1, 25)]
    assert _provider_calls(ledger) == calls
    assert all(c.resumed == c.calls == 12 for c in again.candidates)
    strip = [msgspec.structs.replace(c, resumed=0) for c in again.candidates]
    assert strip == list(first.candidates)
    assert again.recommended == first.recommended


@pytest.mark.anyio
async def test_an_interrupted_eval_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Cancelled after five calls, the next run replays those five and calls only the rest."""
    ledger = tmp_path / "eval.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        with anyio.CancelScope() as scope:

            def stop_after_five(done: int, total: int, call: EvalCall) -> None:
                if done == 5:
                    scope.cancel()

            await door.evaluate(_prompts(), candidates=CANDIDATES[:2], concurrency=1, progress=stop_after_five)
    assert scope.cancelled_caught
    answered = _answered_calls(ledger)
    assert answered >= 5
    async with interlock.open(ledger_path=ledger) as door:
        report = await door.evaluate(_prompts(), candidates=CANDIDATES[:2], concurrency=1)
    resumed = sum(c.resumed for c in report.candidates)
    assert resumed == answered
    assert _answered_calls(ledger) == 12  # each call answered once, over both runs


@pytest.mark.anyio
async def test_the_jobs_reviewer_judges_and_its_verdicts_resume_too(tmp_path: Path) -> None:
    """Job ``extract``'s reviewer judges each answer at a cost; a re-run calls no candidate again."""
    ledger = tmp_path / "eval.sqlite"
    prompts = _prompts()[:2]
    async with interlock.open(ledger_path=ledger) as door:
        first = await door.evaluate(prompts, candidates=["flash", "open"], task="extract", concurrency=1)
    assert first.verifiers == ("reviewer:flagship",)
    assert all(c.verify_cost_cents > 0 for c in first.candidates)
    assert {call.outcome for call in first.calls} <= {"accepted", "rejected", "unjudged"}

    def candidate_calls() -> int:
        with sqlite3.connect(ledger) as conn:
            query = "SELECT COUNT(*) FROM attempts WHERE model IN ('flash', 'open')"
            return int(conn.execute(query).fetchone()[0])

    made = candidate_calls()
    assert made == 4
    async with interlock.open(ledger_path=ledger) as door:
        again = await door.evaluate(prompts, candidates=["flash", "open"], task="extract", concurrency=1)
    assert candidate_calls() == made
    judged = [call for call in first.calls if call.outcome != "unjudged"]
    assert {(c.prompt_id, c.candidate, c.outcome) for c in judged} <= {
        (c.prompt_id, c.candidate, c.outcome) for c in again.calls
    }


@pytest.mark.anyio
async def test_a_tiny_tenant_budget_fails_every_call_with_a_budget_error(tmp_path: Path) -> None:
    """A tenant budget smaller than one call's reservation: each call fails as ``budget``; the eval still reports."""
    config = parse_config(DEFAULT_TOML + "\n[budgets.tenants.default]\nusd_per_day = 0.0001\n")
    async with interlock.open(config, ledger_path=tmp_path / "eval.sqlite") as door:
        report = await door.evaluate(_prompts(), candidates=["flash", "open"])
    assert all(c.failures == {"budget": 6} and c.accepted == 0 for c in report.candidates)
    assert all(call.outcome == "failed" and "budget" in call.detail for call in report.calls)
    assert report.recommended is None
    assert report.toml == ""
    assert "no recommendation" in _table(report)


@pytest.mark.anyio
async def test_verifiers_given_replace_the_jobs_and_judge_every_answer(tmp_path: Path) -> None:
    """A schema verifier given for text prompts rejects every text answer; the reason names it."""
    prompts = [EvalPrompt(prompt="Say hello."), "Name a colour."]
    schema = SchemaVerifier(schema={"type": "object"})
    async with interlock.open(ledger_path=tmp_path / "eval.sqlite") as door:
        report = await door.evaluate(prompts, candidates=["flash"], verify=[schema], task="default")
    (flash,) = report.candidates
    assert flash.failures == {"rejected": 2}
    assert report.verifiers == ("schema",)
    assert all("not JSON" in call.detail for call in report.calls)
    assert report.recommended is None


@pytest.mark.anyio
async def test_bad_library_input_is_a_typed_error_before_any_call(tmp_path: Path) -> None:
    """An unknown candidate, an embedding model, a repeated id or a bad prompt raise before calling anyone."""
    ledger = tmp_path / "eval.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        with pytest.raises(RequestError, match="unknown chat model 'gpt-x'"):
            await door.evaluate(["hi"], candidates=["gpt-x"])
        with pytest.raises(RequestError, match="embed_small"):
            await door.evaluate(["hi"], candidates=["embed_small"])
        with pytest.raises(EvalInputError, match=r"prompts\[1\]: field id: 'a' repeats"):
            await door.evaluate([EvalPrompt(id="a", prompt="x"), EvalPrompt(id="a", prompt="y")], candidates=["flash"])
        with pytest.raises(RequestError, match="task"):
            await door.evaluate(["hi"], candidates=["flash"], task="nope")
    assert _provider_calls(ledger) == 0


# -- the command -----------------------------------------------------------------------------------


def test_json_agrees_with_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` and the table of the same (resumed) eval show the same counts, costs and pick."""
    args = [str(PROMPTS), "--candidates", "open,flash", "--ledger", str(tmp_path / "e.sqlite"), "--task", "cheap_bulk"]
    assert eval_main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    report = msgspec.convert(data, EvalReport)
    os.environ["COLUMNS"] = "80"
    try:
        assert eval_main(args) == 0
    finally:
        del os.environ["COLUMNS"]
    shown = capsys.readouterr()
    assert shown.err == ""  # no progress bar when stderr is not a terminal
    table = shown.out
    for c in report.candidates:
        assert f"({c.accepted}/{c.judged})" in table
        assert f"{c.cost_per_call_cents:.4f}" in table
    assert f"recommended: {report.recommended}" in table
    assert report.toml.splitlines()[1] in table


def test_a_bad_jsonl_line_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    """The command names the file, the line and the field, in one line, with exit code 2."""
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "eval", str(DATA / "eval_bad.jsonl"),
         "--candidates", "flash", "--ledger", str(tmp_path / "e.sqlite")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"interlock eval: .*eval_bad\.jsonl line 2: field prompt: expected `str \| null`, got `int`", lines[0]
    )
    assert not (tmp_path / "e.sqlite").exists()  # refused before the door opened


def test_bad_command_line_values_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown candidate and an unreadable --verify are refused with exit code 2, one line each."""
    base = [str(PROMPTS), "--ledger", str(tmp_path / "e.sqlite")]
    assert eval_main([*base, "--candidates", "flash,nope"]) == 2
    assert eval_main([*base, "--candidates", "flash", "--verify", "{ kind = 'telepathy' }"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert "unknown chat model 'nope'" in errors[0]
    assert errors[1].startswith("interlock eval: request field --verify:")


def test_verify_specs_read_as_toml_inline_tables_or_json() -> None:
    """``--verify`` takes what a job's ``verify`` list holds, in TOML or JSON."""
    assert parse_verifier('{ kind = "reviewer", model_class = "flagship" }') == ReviewerVerifier(model_class="flagship")
    assert parse_verifier('{"kind": "schema", "schema": {"type": "object"}}') == SchemaVerifier(
        schema={"type": "object"}
    )


# -- the JSONL format ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "a", "messages": []}', "line 1: field messages: give prompt or messages, not both"),
        ('{"id": "x"}', "line 1: field prompt: missing (or messages)"),
        ('{"prompt": "a", "temperature": 1}', "line 1: field temperature: unknown field"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "line 1: field messages[0].role: invalid enum value"),
        ('{"prompt": "a", "schema": {"type": 5}}', "line 1: field schema: schema must be a valid JSON Schema"),
        ("[1, 2]", "line 1: expected a JSON object, got `array`"),
        ("{nope", "line 1: not JSON"),
    ],
)
def test_a_bad_line_names_its_line_and_field(line: str, message: str) -> None:
    """Each kind of bad line is one ``EvalInputError`` naming the line and the field."""
    with pytest.raises(EvalInputError) as caught:
        parse_prompts(line, "p.jsonl")
    assert str(caught.value).startswith(f"p.jsonl {message}")


def test_ids_default_to_line_numbers_and_blank_lines_are_skipped() -> None:
    """A prompt without an id is named by its line number."""
    prompts = parse_prompts('{"prompt": "a"}\n\n{"id": "b", "prompt": "b"}\n{"prompt": "c"}\n', "p.jsonl")
    assert [p.id for p in prompts] == ["1", "b", "4"]


# -- the statistics ------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_wilson_interval_is_within_0_1_and_holds_the_observed_rate(counts: tuple[int, int]) -> None:
    """For any k of n the interval is ordered, within [0, 1], and contains k/n."""
    k, n = counts
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= k / n <= high
        assert high - low < 1.0


def test_the_wilson_interval_matches_a_known_value() -> None:
    """8 of 10 gives the textbook 95% Wilson interval (0.490, 0.943)."""
    low, high = wilson_interval(8, 10)
    assert round(low, 3) == 0.490
    assert round(high, 3) == 0.943


def _candidate(name: str, accepted: int, rejected: int, cents_per_call: float) -> EvalCandidate:
    calls = [
        EvalCall(
            prompt_id=str(i),
            candidate=name,
            repeat=0,
            outcome="accepted" if i < accepted else "rejected",
            cost_cents=cents_per_call,
            ttlt_ms=float(i),
        )
        for i in range(accepted + rejected)
    ]
    return summarize(name, name, calls)


candidates_strategy = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.floats(0.0, 5.0, allow_nan=False)), min_size=1, max_size=5
).map(lambda rows: [_candidate(f"m{i}", a, r, c) for i, (a, r, c) in enumerate(rows)])


@given(candidates_strategy)
def test_the_recommendation_is_the_cheapest_candidate_not_significantly_worse(cands: list[EvalCandidate]) -> None:
    """The pick is never significantly worse than the best, and no such candidate is cheaper per accepted answer."""
    picked = recommend(cands)
    best = best_candidate(cands)
    if best is None or best.accepted == 0:
        assert picked.model is None
        return
    assert picked.best == best.model
    chosen = next(c for c in cands if c.model == picked.model)
    assert chosen.accepted > 0
    assert not significantly_worse(chosen.accepted, chosen.judged, best.accepted, best.judged)
    price = chosen.cost_per_accepted_cents
    assert price is not None
    for c in cands:
        if c.accepted and not significantly_worse(c.accepted, c.judged, best.accepted, best.judged):
            assert c.cost_per_accepted_cents is not None
            assert c.cost_per_accepted_cents >= price


def test_a_clearly_worse_cheap_candidate_is_passed_over_and_a_close_one_is_not() -> None:
    """2/20 against 19/20 is significantly worse; 17/20 against 19/20 is not, so the cheaper one wins."""
    best = _candidate("best", 19, 1, 1.0)
    assert recommend([best, _candidate("cheap", 2, 18, 0.01)]).model == "best"
    assert recommend([best, _candidate("close", 17, 3, 0.01)]).model == "close"


def test_the_toml_change_is_empty_when_the_job_already_asks_the_pick_first() -> None:
    """Moving ``hard_reasoning`` to the model its chain starts with changes nothing; another model goes first."""
    from interlock.actors._evaluate import _first_choice

    config = default_config()
    chain = config.jobs["hard_reasoning"].chain
    first = _first_choice(config, "hard_reasoning")
    assert first == "flagship_anthropic"
    assert toml_change("hard_reasoning", chain, first, "flagship_anthropic") == ""
    moved = toml_change("hard_reasoning", chain, first, "flagship_openai")
    assert moved == '[jobs.hard_reasoning]\nchain = ["flagship_openai", "flagship_anthropic"]'
    assert _first_choice(config, "cheap_bulk") == "mini"  # the first model of its first class


def _repeated(name: str, always: int, never: int, repeats: int, cents: float = 1.0) -> list[EvalCall]:
    """``always`` prompts accepted on every repeat, ``never`` prompts rejected on every repeat."""
    return [
        EvalCall(prompt_id=f"p{i}", candidate=name, repeat=r, outcome="accepted" if i < always else "rejected",
                 cost_cents=cents)
        for i in range(always + never)
        for r in range(repeats)
    ]  # fmt: skip


def test_repeats_of_one_prompt_count_as_one_cluster_not_as_independent_judgements() -> None:
    """Repeats that always agree are worth one judgement per prompt; repeats that vary within each prompt, all."""
    assert effective_judged(_repeated("m", 5, 5, repeats=1)) == 10.0  # one per prompt: as they are
    assert effective_judged(_repeated("m", 5, 5, repeats=5)) == 10.0  # 50 calls, 10 prompts of evidence
    varying = [
        EvalCall(prompt_id=f"p{i}", candidate="m", repeat=r, outcome="accepted" if r % 2 == 0 else "rejected")
        for i in range(10)
        for r in range(4)
    ]  # every prompt half accepted: the prompts agree, the repeats carry the information
    assert effective_judged(varying) == 40.0
    clustered = summarize("m", "m", _repeated("m", 5, 5, repeats=5))
    naive_low, naive_high = wilson_interval(25, 50)
    assert clustered.accept_high - clustered.accept_low > naive_high - naive_low  # wider: honest about 10 prompts


def test_a_cheaper_candidate_is_not_called_worse_on_repeats_that_only_echo_their_prompts() -> None:
    """9/10 prompts against 6/10, each repeated 5 times: 45/50 against 30/50 looks significant, 10 prompts are not."""
    best = summarize("best", "best", _repeated("best", 9, 1, repeats=5, cents=1.0))
    cheap = summarize("cheap", "cheap", _repeated("cheap", 6, 4, repeats=5, cents=0.1))
    assert significantly_worse(cheap.accepted, cheap.judged, best.accepted, best.judged)  # counted as independent
    assert recommend([best, cheap]).model == "cheap"  # counted as what they are

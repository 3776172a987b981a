"""Ensembles and reviews through a real door: members, cancels, unjudged reviews, auxiliary calls, rejections.

Each test opens a door on the embedded simulator with a TOML config and a SQLite ledger file,
then asserts what the caller got (route fields, error types) and what the ledger holds (attempt
rows with their purpose under the parent request, costs that sum, the request's outcome).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import interlock
from interlock import ChatResponse
from interlock._errors import AnswersRejected, ChainExhausted
from interlock.adapters.simulator._server import ServerError, StallFirstToken
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._budget import day_bucket
from interlock.policies._config import parse_config
from interlock.policies._quality import quality_rollup
from interlock.policies._rollup import rollup

pytestmark = pytest.mark.anyio

FLEET = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.b]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[providers.c]
kind = "simulator"
format = "gemini"
probe = { interval_s = 3600 }

[models.small]
provider = "a"
id = "sim-small-1"
class = "fast"
lab = "openai"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 1.0 }

[models.large]
provider = "b"
id = "sim-large-1"
class = "flagship"
lab = "anthropic"
context_window = 100000
max_output_tokens = 1000
price = { input = 50.0, output = 50.0 }

[models.grand]
provider = "c"
id = "sim-grand-1"
class = "flagship"
lab = "google"
context_window = 100000
max_output_tokens = 1000
price = { input = 50.0, output = 50.0 }

[models.spare]
provider = "c"
id = "sim-spare-1"
class = "fast"
lab = "google"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 1.0 }

[models.llama]
provider = "a"
id = "sim-llama-1"
class = "local"
lab = "meta"
context_window = 100000
max_output_tokens = 1000
price = { input = 0.1, output = 0.1 }

[jobs.default]
chain = ["fast"]
on_exhausted = "degrade"
max_degrade = { classes = ["local"] }

[jobs.panel]
chain = ["spare"]
ensemble = { models = ["small", "large"], combine = "first_valid" }

[jobs.vote]
chain = ["spare"]
ensemble = { models = ["small", "large"], combine = "judge", judge = "large" }

[jobs.checked_panel]
chain = ["spare"]
ensemble = { models = ["small", "large"], combine = "first_valid" }
verify = [{ kind = "schema", schema = { type = "object" } }]

[jobs.strict_panel]
chain = ["spare"]
cascade = true
ensemble = { models = ["small", "large"], combine = "first_valid" }
verify = [{ kind = "schema", schema = { type = "object" } }]

[jobs.strict]
chain = ["small", "large"]
cascade = true
allow_costlier_fallback = true
verify = [{ kind = "schema", schema = { type = "object" } }]

[jobs.reviewed]
chain = ["small", "large"]
cascade = true
allow_costlier_fallback = true
verify = [{ kind = "reviewer", model_class = "flagship" }]

[jobs.sorted]
chain = ["fast"]
[jobs.sorted.classifier]
model = "small"
labels = { hard = ["flagship"], easy = ["fast"] }

[tenants.narrow]
allowed_providers = ["a"]

[budgets.tenants.acme]
usd_per_day = 100.0

[simulator.default]
output_tokens = { kind = "fixed", value = 5 }

[simulator.models.sim-large-1]
review_accept_p = 1.0
"""


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    """A door on a three-provider simulated fleet with the ensemble and review jobs above."""
    async with interlock.open(parse_config(FLEET), ledger_path=tmp_path / "ledger.sqlite") as opened:
        yield opened


def sim(door: interlock.Door) -> Any:
    simulator = door.simulator  # type: ignore[attr-defined]
    assert simulator is not None
    return simulator


async def ledger(door: interlock.Door, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    """The request rows and attempt rows on disk, oldest first."""
    await door.flush()
    async with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        requests = await store.fetch_requests(None, None, None)
        attempts = await store.fetch_attempts(None, None, None)
    return sorted(requests, key=lambda r: r.ts), sorted(attempts, key=lambda a: (a.ts, a.attempt))


async def wait_disconnected(door: interlock.Door, model_id: str, count: int) -> int:
    """The simulator's count of clients gone for ``model_id``, polled until it reaches ``count`` or 5 s pass."""
    with anyio.move_on_after(5.0):
        while sim(door).stats(model_id).disconnected < count:
            await anyio.sleep(0.01)
    return int(sim(door).stats(model_id).disconnected)


# -- ensembles -----------------------------------------------------------------------------------


async def test_a_failed_member_is_not_rescued_by_the_jobs_chain(door: interlock.Door, tmp_path: Path) -> None:
    """Members never fall back along the chain: when every member fails, the chain's model is never called."""
    sim(door).script("sim-small-1", [ServerError(), ServerError()])  # a 500 is retried once on its provider
    sim(door).script("sim-large-1", [ServerError(), ServerError()])
    with pytest.raises(ChainExhausted) as info:
        await door.ask("what is 2+2", task="panel")
    assert {name for name, _ in info.value.errors} == {"small", "large"}
    assert sim(door).stats("sim-spare-1").received == 0
    requests, attempts = await ledger(door, tmp_path)
    assert [(r.task, r.outcome) for r in requests] == [("panel", "error")]
    assert sorted(a.model for a in attempts) == ["large", "large", "small", "small"]
    assert {a.outcome for a in attempts} == {"error"}


async def test_picking_a_member_other_than_the_first_is_not_degraded(door: interlock.Door, tmp_path: Path) -> None:
    """The first member fails, the second answers: only members are tried, and the answer is not degraded."""
    sim(door).script("sim-small-1", [ServerError(), ServerError()])
    reply = await door.ask("what is 2+2", task="panel")
    assert reply.route is not None
    assert reply.route.model == "large"
    assert not reply.route.degraded
    assert reply.route.degraded_reason is None
    assert {a.model for a in reply.route.attempts} == {"small", "large"}
    assert sim(door).stats("sim-spare-1").received == 0
    requests, attempts = await ledger(door, tmp_path)
    assert len(requests) == 1
    assert (requests[0].model, requests[0].degraded, requests[0].attempts) == ("large", False, 3)
    assert sorted(a.attempt for a in attempts) == [1, 2, 3]


async def test_first_valid_returns_at_the_first_answer_and_cancels_the_rest(
    door: interlock.Door, tmp_path: Path
) -> None:
    """A stalled member does not hold the answer back: it is cancelled upstream and recorded as lost."""
    sim(door).script("sim-large-1", [StallFirstToken(30.0)])
    with anyio.fail_after(10):  # far below the stall: the answer did not wait for the slow member
        reply = await door.ask("what is 2+2", task="panel")
    assert reply.route is not None
    assert reply.route.model == "small"
    assert await wait_disconnected(door, "sim-large-1", 1) == 1  # upstream saw its connection close
    _, attempts = await ledger(door, tmp_path)
    lost = [a for a in attempts if a.model == "large"]
    assert [(a.outcome, a.cancel_reason) for a in lost] == [("cancelled", "ensemble_lost")]
    assert [a.outcome for a in attempts if a.model == "small"] == ["ok"]


async def test_a_caller_who_leaves_mid_ensemble_leaves_every_member_recorded(
    door: interlock.Door, tmp_path: Path
) -> None:
    """Cancelled while both members stall: both are cancelled upstream and both are the request's attempts."""
    sim(door).script("sim-small-1", [StallFirstToken(30.0)])
    sim(door).script("sim-large-1", [StallFirstToken(30.0)])

    async def ask() -> None:
        await door.ask("what is 2+2", task="panel")

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        with anyio.fail_after(5):
            while sim(door).stats().received < 2:  # both members are at their providers
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert await wait_disconnected(door, "sim-small-1", 1) == 1
    assert await wait_disconnected(door, "sim-large-1", 1) == 1
    requests, attempts = await ledger(door, tmp_path)
    assert [(r.task, r.outcome, r.attempts) for r in requests] == [("panel", "cancelled", 2)]
    assert sorted((a.model, a.outcome) for a in attempts) == [("large", "cancelled"), ("small", "cancelled")]
    assert {a.request_id for a in attempts} == {requests[0].request_id}


async def test_the_jobs_verify_runs_on_the_ensembles_pick(door: interlock.Door, tmp_path: Path) -> None:
    """The pick is judged: its verdict is on the route and on its attempt, and no other member is judged."""
    sim(door).script("sim-large-1", [StallFirstToken(30.0)])
    reply = await door.ask("give me json", task="checked_panel")
    assert reply.route is not None
    assert reply.route.model == "small"
    assert (reply.route.verdict or "").startswith("reject:schema:")  # the simulator answers words, not JSON
    _, attempts = await ledger(door, tmp_path)
    assert [(a.model, (a.verdict or "").split(":")[0]) for a in attempts] == [("small", "reject"), ("large", "")]


async def test_a_cascade_ensemble_whose_pick_is_rejected_raises(door: interlock.Door, tmp_path: Path) -> None:
    """A rejected pick of a cascade ensemble is AnswersRejected: it never escalates to the job's chain."""
    sim(door).script("sim-large-1", [StallFirstToken(30.0)])
    with pytest.raises(AnswersRejected) as info:
        await door.ask("give me json", task="strict_panel")
    assert isinstance(info.value.answer, ChatResponse)
    assert info.value.answer.route is not None
    assert info.value.answer.route.model == "small"
    assert sim(door).stats("sim-spare-1").received == 0
    requests, _ = await ledger(door, tmp_path)
    assert [(r.outcome, r.error, r.model) for r in requests] == [("error", "rejected", "small")]


async def test_a_judge_is_an_attempt_of_the_request_with_its_purpose(door: interlock.Door, tmp_path: Path) -> None:
    """The judge's call is recorded under the ensemble's request, numbered after the members, its cost included."""
    reply = await door.ask("pick me", task="vote")
    assert reply.route is not None
    assert [a.purpose for a in reply.route.attempts] == ["", "", "judge"]
    judge_cost = reply.route.attempts[-1].cost_cents
    assert judge_cost > 0
    assert reply.route.aux_cost_cents == pytest.approx(judge_cost)
    assert reply.route.cost_cents == pytest.approx(sum(a.cost_cents for a in reply.route.attempts))
    requests, attempts = await ledger(door, tmp_path)
    assert len(requests) == 1  # no row of its own for the judge, under job default or any other
    assert {a.request_id for a in attempts} == {requests[0].request_id}
    assert sorted((a.attempt, a.purpose) for a in attempts) == [(1, ""), (2, ""), (3, "judge")]
    assert requests[0].cost_cents == pytest.approx(reply.route.cost_cents)


# -- reviews -------------------------------------------------------------------------------------


async def test_a_review_is_recorded_under_its_parent_and_billed(tmp_path: Path) -> None:
    """A review is an attempt of its request (purpose review): in the route's cost, the row, report and budget."""
    async with interlock.open(parse_config(FLEET), ledger_path=tmp_path / "ledger.sqlite") as door:
        reply = await door.ask("summarize this", task="reviewed", tenant="acme")
        assert reply.route is not None
        assert reply.route.verdict == "accept:reviewer%3Alarge"
        (answer, review) = reply.route.attempts
        assert (answer.model, answer.purpose, review.model, review.purpose) == ("small", "", "large", "review")
        assert review.cost_cents > answer.cost_cents  # the review costs more than the answer, and is not hidden
        assert reply.route.cost_cents == pytest.approx(answer.cost_cents + review.cost_cents)
        assert reply.route.aux_cost_cents == pytest.approx(review.cost_cents)
        state = door._state  # type: ignore[attr-defined]
        spent = await state.budgets.spent("tenant:acme", day_bucket(door._clock.wall()))  # type: ignore[attr-defined]
        requests, attempts = await ledger(door, tmp_path)
    assert [r.task for r in requests] == ["reviewed"]  # nothing lands under job default
    (row,) = requests
    assert [(a.request_id, a.attempt, a.purpose, a.task) for a in attempts] == [
        (row.request_id, 1, "", "reviewed"),
        (row.request_id, 2, "review", "reviewed"),
    ]
    assert row.attempts == 1
    assert row.cost_cents == pytest.approx(math.fsum(a.cost_cents for a in attempts))
    assert row.aux_cost_cents == pytest.approx(attempts[1].cost_cents)
    assert spent == pytest.approx(row.cost_cents)  # the review was billed to the tenant's budget too
    report = rollup(requests, attempts, now=row.ts + 1)
    assert [(t.task, round(t.cost_cents, 9)) for t in report.tasks] == [("reviewed", round(row.cost_cents, 9))]


async def test_a_reviewer_that_fails_leaves_the_answer_unjudged(door: interlock.Door, tmp_path: Path) -> None:
    """A failed reviewer call is unjudged: the author is not rejected, the cascade does not escalate, no demotion."""
    sim(door).script("sim-large-1", [ServerError(), ServerError()])
    reply = await door.ask("summarize this", task="reviewed")
    assert reply.route is not None
    assert reply.route.model == "small"
    assert (reply.route.verdict or "").startswith("unjudged:reviewer")
    assert sim(door).stats("sim-llama-1").received == 0  # the failed review never degraded to the local model
    requests, attempts = await ledger(door, tmp_path)
    assert [(r.outcome, r.attempts) for r in requests] == [("ok", 1)]
    assert [(a.model, a.purpose, a.outcome) for a in attempts] == [
        ("small", "", "ok"),
        ("large", "review", "error"),
        ("large", "review", "error"),
    ]
    judged = quality_rollup(attempts, now=requests[0].ts + 1)
    assert (judged.judged, judged.unjudged, judged.demotions) == (0, 1, ())
    assert [(s.model, s.judged, s.unjudged, s.accept_rate) for s in judged.models] == [("small", 0, 1, None)]


async def test_a_reviewer_by_class_is_never_a_degraded_local_model(door: interlock.Door, tmp_path: Path) -> None:
    """No flagship may serve this tenant: the review is unjudged, never done by the default job's local degrade."""
    reply = await door.ask("summarize this", task="reviewed", tenant="narrow")
    assert reply.route is not None
    assert reply.route.model == "small"
    assert (reply.route.verdict or "").startswith("unjudged:reviewer:no reviewer of class 'flagship'")
    assert sim(door).stats("sim-llama-1").received == 0
    assert sim(door).stats("sim-large-1").received == 0
    _, attempts = await ledger(door, tmp_path)
    assert [(a.model, a.purpose) for a in attempts] == [("small", "")]


async def test_a_classifier_label_is_an_attempt_of_the_request(door: interlock.Door, tmp_path: Path) -> None:
    """The small model's label call is recorded under the request it routes, with purpose classify."""
    reply = await door.ask("route me", task="sorted")
    assert reply.route is not None
    assert [a.purpose for a in reply.route.attempts] == ["", "classify"]  # auxiliary calls after the run's
    assert reply.route.aux_cost_cents == pytest.approx(reply.route.attempts[1].cost_cents)
    requests, attempts = await ledger(door, tmp_path)
    assert [r.task for r in requests] == ["sorted"]
    (row,) = requests
    assert [(a.attempt, a.purpose) for a in attempts] == [(1, ""), (2, "classify")]
    assert row.cost_cents == pytest.approx(math.fsum(a.cost_cents for a in attempts))


# -- cascades that reject every answer -----------------------------------------------------------


async def test_every_rejected_answer_of_a_cascade_is_a_typed_error(door: interlock.Door, tmp_path: Path) -> None:
    """The caller gets AnswersRejected holding the last answer and every reason; the row is an error, rejected."""
    with pytest.raises(AnswersRejected) as info:
        await door.ask("give me json", task="strict")
    error = info.value
    assert error.kind == "rejected"
    assert len(error.reasons) == 2
    assert isinstance(error.answer, ChatResponse)
    assert error.answer.content
    assert error.answer.route is not None
    assert error.answer.route.model == "large"
    assert (error.answer.route.verdict or "").startswith("reject:schema:")
    requests, attempts = await ledger(door, tmp_path)
    assert [(r.outcome, r.error, r.model) for r in requests] == [("error", "rejected", "large")]
    assert [(a.model, (a.verdict or "").split(":")[0]) for a in attempts] == [("small", "reject"), ("large", "reject")]


async def test_a_cascade_whose_escalation_fails_still_hands_back_the_rejected_answer(
    door: interlock.Door, tmp_path: Path
) -> None:
    """The next candidate fails after a reject: still AnswersRejected, holding the rejected answer and its author."""
    sim(door).script("sim-large-1", [ServerError(), ServerError()])
    with pytest.raises(AnswersRejected) as info:
        await door.ask("give me json", task="strict")
    assert isinstance(info.value.answer, ChatResponse)
    assert info.value.answer.route is not None
    assert info.value.answer.route.model == "small"
    assert len(info.value.reasons) == 1
    requests, _ = await ledger(door, tmp_path)
    assert [(r.outcome, r.error, r.model) for r in requests] == [("error", "rejected", "small")]

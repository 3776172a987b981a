"""The rails through the door: cache, budgets, concurrency leases, verify, cascade, tool-call retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import interlock
from interlock import BudgetExceeded, ChatRequest, Message, ToolSpec
from interlock.adapters.simulator._server import StallFirstToken
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._budget import day_bucket
from interlock.policies._config import parse_config
from interlock.policies._tokens import input_token_bound

pytestmark = pytest.mark.anyio

BASE = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.b]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[models.cheap]
provider = "a"
id = "sim-cheap-1"
class = "fast"
lab = "openai"
context_window = 100000
max_output_tokens = 1000
price = { input = 100.0, output = 100.0 }

[models.big]
provider = "b"
id = "sim-big-1"
class = "flagship"
lab = "anthropic"
context_window = 100000
max_output_tokens = 1000
price = { input = 100.0, output = 100.0 }

[jobs.cached]
chain = ["cheap"]
cache_ttl_s = 600

[jobs.plain]
chain = ["cheap", "big"]
allow_costlier_fallback = true

[jobs.strict_json]
chain = ["cheap", "big"]
cascade = true
allow_costlier_fallback = true
verify = [{ kind = "schema", schema = { type = "object", required = ["total"] } }]

[jobs.reviewed]
chain = ["cheap"]
verify = [{ kind = "reviewer", model_class = "flagship" }]

[jobs.tools]
chain = ["cheap"]

[simulator.default]
output_tokens = { kind = "fixed", value = 5 }
"""


async def open_door(tmp_path: Path, extra: str = "") -> Any:
    return interlock.open(parse_config(BASE + extra), ledger_path=tmp_path / "ledger.sqlite")


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    """A door on a two-provider fleet with every rail configured by the jobs above."""
    async with await open_door(tmp_path) as d:
        yield d


async def rows(door: interlock.Door, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    await door.flush()
    async with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        return await store.fetch_requests(None, None, None), await store.fetch_attempts(None, None, None)


async def test_cache_hit_replays_at_zero_cost(door: interlock.Door, tmp_path: Path) -> None:
    """A repeated request is answered from the cache with the same content, zero cost, and a cache_hit row."""
    first = await door.ask("same question", task="cached", tenant="acme")
    second = await door.ask("same question", task="cached", tenant="acme")
    assert second.content == first.content
    assert second.route is not None
    assert second.route.cache_hit
    assert second.route.cost_cents == 0
    assert door._sim.stats("sim-cheap-1").received == 1  # type: ignore[attr-defined]
    requests, _ = await rows(door, tmp_path)
    assert [r.cache_hit for r in requests] == [False, True]


async def test_cache_is_scoped_per_tenant_and_can_be_bypassed(door: interlock.Door) -> None:
    """Another tenant never sees a cached answer, and cache=refresh goes upstream again."""
    await door.ask("q", task="cached", tenant="acme")
    other = await door.ask("q", task="cached", tenant="globex")
    assert other.route is not None
    assert not other.route.cache_hit
    refreshed = await door.ask("q", task="cached", tenant="acme", metadata={"cache": "refresh"})
    assert refreshed.route is not None
    assert not refreshed.route.cache_hit
    assert door._sim.stats("sim-cheap-1").received == 3  # type: ignore[attr-defined]


async def test_over_budget_candidate_is_skipped_then_budget_exceeded(tmp_path: Path) -> None:
    """A candidate that would overspend is skipped (degraded); with none left the caller gets BudgetExceeded."""
    budget = """
[budgets.providers.a]
usd_per_day = 0.0001
[budgets.tenants.acme]
usd_per_day = 1000.0
callers = { loop = { usd_per_day = 0.0001 } }
"""
    async with await open_door(tmp_path, budget) as door:
        reply = await door.ask("hello", task="plain", tenant="acme", caller="svc")
        assert reply.route is not None
        assert reply.route.model == "big"
        assert reply.route.degraded
        first = reply.route.attempts[0]
        assert (first.model, first.outcome, first.error) == ("cheap", "skipped", "budget")
        with pytest.raises(BudgetExceeded) as info:
            await door.ask("hello", task="plain", tenant="acme", caller="loop")
        assert info.value.budget == "caller:acme/loop"
        assert info.value.limit == pytest.approx(0.01)
        requests, attempts = await rows(door, tmp_path)
    assert len(requests) == 2
    assert requests[1].error == "budget"  # its own kind: not a provider rate limit
    assert {a.outcome for a in attempts if a.model == "cheap"} == {"skipped"}
    assert {a.error for a in attempts if a.model == "cheap"} == {"budget"}
    assert [a.error_detail for a in attempts if a.model == "cheap"][-1].startswith("budget caller:acme/loop")


async def test_a_subscription_models_daily_token_cap_through_the_door(tmp_path: Path) -> None:
    """A model's token_cap_per_day refuses calls once its settled tokens leave no room for one reservation."""
    request = ChatRequest(messages=(Message.text("user", "hello"),))
    reservation = input_token_bound(request) + 100  # the model's max_output_tokens: no max_tokens is passed
    cap = reservation + 10
    extra = f"""
[models.sub]
provider = "a"
id = "sim-sub-1"
class = "local"
context_window = 100000
max_output_tokens = 100
billing = "subscription"
token_cap_per_day = {cap}

[jobs.capped]
chain = ["sub"]
"""  # no [budgets] section: a model's cap alone turns the budget rail on
    async with await open_door(tmp_path, extra) as door:
        replies: list[Any] = []
        with pytest.raises(BudgetExceeded) as info:
            for _ in range(10):
                replies.append(await door.ask("hello", task="capped", tenant="acme"))
        day = day_bucket(door._clock.wall())  # type: ignore[attr-defined]
        spent = await door._state.budgets.spent("model:sub#tokens", day, unit="tokens")  # type: ignore[attr-defined]
        requests, _ = await rows(door, tmp_path)
    per_call = replies[0].usage.input_tokens + replies[0].usage.output_tokens
    assert per_call > 0
    # Admitted while settled tokens plus one reservation fit under the cap; the next is refused.
    assert len(replies) == 1 + (cap - reservation) // per_call
    assert spent == len(replies) * per_call
    assert (info.value.budget, info.value.unit, info.value.limit) == ("model:sub#tokens", "tokens", cap)
    assert [r.error for r in requests] == [None] * len(replies) + ["budget"]


async def test_concurrent_calls_cannot_overspend(tmp_path: Path) -> None:
    """Many concurrent calls against a small budget: the settled spend never passes the limit."""
    budget = """
[budgets.tenants.acme]
usd_per_day = 0.05
"""
    async with await open_door(tmp_path, budget) as door:
        outcomes: list[str] = []

        async def one(i: int) -> None:
            try:
                await door.ask(f"question {i}", task="tools", tenant="acme", max_tokens=20)
                outcomes.append("ok")
            except BudgetExceeded:
                outcomes.append("over")

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(one, i)
        requests, _ = await rows(door, tmp_path)
    assert "over" in outcomes
    assert "ok" in outcomes
    assert sum(r.cost_cents for r in requests) <= 5.0 + 1e-9


async def test_lease_limit_refuses_past_the_cap(tmp_path: Path) -> None:
    """With one machine-wide slot for a provider, a second concurrent call finds no slot and falls back."""
    limits = """
[limits]
per_provider = { a = 1 }
"""
    async with await open_door(tmp_path, limits) as door:
        door._sim.script("sim-cheap-1", [StallFirstToken(0.5)])  # type: ignore[attr-defined]
        replies: list[Any] = []

        async def one() -> None:
            replies.append(await door.ask("hi", task="plain"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            leases = door._state.leases  # type: ignore[attr-defined]
            with anyio.fail_after(5):  # the first call holds the only slot (it stalls upstream)
                while await leases.holders("provider:a", door._clock.wall()) == 0:  # type: ignore[attr-defined]
                    await anyio.sleep(0.005)
            tg.start_soon(one)
    models = sorted(r.route.model for r in replies)
    assert models == ["big", "cheap"]
    skipped = [a for r in replies for a in r.route.attempts if a.outcome == "skipped"]
    assert len(skipped) == 1


async def test_schema_reject_cascades_and_records_verdicts(door: interlock.Door, tmp_path: Path) -> None:
    """A rejected cheap answer escalates to the next model; when that is rejected too the caller gets a typed
    error holding the last answer, not the rejected answer as if accepted, and both verdicts are on their rows."""
    with pytest.raises(interlock.AnswersRejected) as info:
        await door.ask("give me json", task="strict_json")
    last = info.value.answer
    assert last.route is not None
    assert last.route.model == "big"
    assert not last.route.degraded  # a cascade escalation is the job's design, not a degradation
    assert last.route.verdict is not None
    assert last.route.verdict.startswith("reject")
    assert len(info.value.reasons) == 2
    _, attempts = await rows(door, tmp_path)
    assert [a.verdict.split(":")[0] for a in attempts] == ["reject", "reject"]


async def test_reviewer_comes_from_another_lab(door: interlock.Door) -> None:
    """A reviewer verifier calls a model of another lab and records its verdict."""
    reply = await door.ask("summarize", task="reviewed")
    assert reply.route is not None
    assert reply.route.verdict is not None
    assert "reviewer%3Abig" in reply.route.verdict  # ":" in a verifier name is escaped in verdict strings
    bodies = door._sim.stats("sim-big-1").bodies  # type: ignore[attr-defined]
    assert any("ACCEPT" in str(b) for b in bodies)


async def test_invalid_tool_call_is_retried_once_then_reported(door: interlock.Door, tmp_path: Path) -> None:
    """Tool-call arguments that break the tool's schema get one corrective retry, then a reject verdict."""
    # No string is both 3+ and 2- long: the simulator's arguments (valid for any schema it can meet) break it.
    tool = ToolSpec(
        "lookup",
        "find a thing",
        {"type": "object", "properties": {"sku": {"type": "string", "minLength": 3, "maxLength": 2}},
         "required": ["sku"]},
    )
    reply = await door.ask("find it", task="tools", tools=[tool], tool_choice=interlock.ToolChoiceNamed("lookup"))
    assert reply.tool_calls
    _, attempts = await rows(door, tmp_path)
    assert len(attempts) == 2
    assert all((a.verdict or "").startswith("reject:tool_calls") for a in attempts)
    retry_body = door._sim.stats("sim-cheap-1").bodies[-1]  # type: ignore[attr-defined]
    assert "lookup" in str(retry_body["messages"][-1])


async def test_map_keeps_order_survives_failures_and_resumes_from_cache(door: interlock.Door) -> None:
    """door.map returns per-item results in order, one failure loses nothing else, and a rerun replays the cache."""
    from interlock.adapters.simulator._server import ServerError

    # Twice: a 500 gets one retry on the same provider before the request fails.
    door._sim.script("sim-cheap-1", [ServerError(), ServerError()])  # type: ignore[attr-defined]
    seen: list[tuple[int, int]] = []
    inputs = [f"item {i}" for i in range(10)]
    results = await door.map(inputs, task="cached", concurrency=1, progress=lambda d, t: seen.append((d, t)))
    assert len(results) == 10
    assert isinstance(results[0], interlock.ChainExhausted)
    assert all(isinstance(r, interlock.ChatResponse) for r in results[1:])
    assert seen[-1] == (10, 10)
    again = await door.map(inputs, task="cached", concurrency=4)
    hits = [r.route.cache_hit for r in again if isinstance(r, interlock.ChatResponse) and r.route]
    assert hits.count(True) == 9
    with pytest.raises(interlock.RequestError):
        await door.map(inputs, task="cached", concurrency=0)


async def test_python_verifier_and_agreement(tmp_path: Path) -> None:
    """A Python verifier given to open() judges its job; an agreement verifier asks a second model."""

    async def short_enough(response: interlock.ChatResponse) -> interlock.Verdict:
        return interlock.Verdict(len(response.content) < 3, "answer must be under 3 characters", "short")

    extra = '\n[jobs.agree]\nchain = ["cheap"]\nverify = [{ kind = "agreement", model = "big" }]\n'
    verifier = interlock.CallableVerifier(name="short", check=short_enough)
    async with interlock.open(
        parse_config(BASE + extra), ledger_path=tmp_path / "l.sqlite", verifiers={"plain": [verifier]}
    ) as door:
        judged = await door.ask("hello", task="plain")
        assert judged.route is not None
        assert judged.route.verdict == "reject:short:answer must be under 3 characters"
        agreed = await door.ask("hello", task="agree")
        assert agreed.route is not None
        assert agreed.route.verdict is not None
        assert "agreement" in agreed.route.verdict
        assert door._sim.stats("sim-big-1").received == 1  # type: ignore[attr-defined]
    with pytest.raises(interlock.ConfigError) as info:
        async with interlock.open(parse_config(BASE), ledger_path=tmp_path / "m.sqlite", verifiers={"nope": []}):
            pass
    assert info.value.key == "verifiers.nope"


async def test_every_rail_in_order_through_the_door(tmp_path: Path) -> None:
    """cache -> budget -> breaker -> slot -> call -> verify, all on one job: a repeat is served by the cache
    before any budget is reserved or slot taken; a fresh call spends budget, holds a slot only while it runs,
    and carries the verifier's verdict."""
    extra = """
[jobs.everything]
chain = ["cheap"]
cache_ttl_s = 600
verify = [{ kind = "reviewer", model_class = "flagship" }]

[budgets.tenants.acme]
usd_per_day = 100.0

[limits]
per_provider = { a = 1 }

[simulator.models.sim-big-1]
review_accept_p = 1.0
"""
    async with await open_door(tmp_path, extra) as door:
        first = await door.ask("same", task="everything", tenant="acme")
        assert first.route is not None
        assert first.route.verdict == "accept:reviewer%3Abig"
        assert first.route.cost_cents > 0
        second = await door.ask("same", task="everything", tenant="acme")
        assert second.route is not None
        assert second.route.cache_hit
        assert door._sim.stats("sim-cheap-1").received == 1  # type: ignore[attr-defined]
        state = door._state  # type: ignore[attr-defined]
        day = __import__("interlock.policies._budget", fromlist=["day_bucket"]).day_bucket(
            door._clock.wall()  # type: ignore[attr-defined]
        )
        spent = await state.budgets.spent("tenant:acme", day)
        holders = await state.leases.holders("provider:a", door._clock.wall())  # type: ignore[attr-defined]
        requests, _ = await rows(door, tmp_path)
    # Settled spend is exactly what the ledger billed: the answer plus its review, both under acme's budget.
    assert spent == pytest.approx(sum(r.cost_cents for r in requests))
    # The review is an auxiliary call of the same request: its cost is inside the route's cost.
    assert spent == pytest.approx(first.route.cost_cents)
    assert first.route.aux_cost_cents > 0
    assert holders == 0


async def test_job_marks_prompt_cache_breakpoints(tmp_path: Path) -> None:
    """A job's prompt_cache setting puts Anthropic cache_control on the system prompt and the tools."""
    extra = '\n[jobs.cached_prompt]\nchain = ["big"]\nprompt_cache = ["system", "tools"]\n'
    async with await open_door(tmp_path, extra) as door:
        messages = [Message.text("system", "a long shared preamble"), Message.text("user", "hi")]
        await door.ask(messages, task="cached_prompt", tools=[ToolSpec("lookup", "find")])
        body = door._sim.stats("sim-big-1").bodies[-1]  # type: ignore[attr-defined]
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}

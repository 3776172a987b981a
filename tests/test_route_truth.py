"""Every answer says truthfully who made it: first choice, degradation, skipped candidates, cache hits,
the provider's own model id, and the typed refusal when a routing rule leaves no model.

Through the real door on the loopback simulator (and one real aiohttp server on 127.0.0.1 speaking
OpenAI's chat-completions stream byte by byte, for the served model id); the ledger is a real
SQLite file, read back after each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from aiohttp import web
from rich.console import Console

import interlock
from interlock import BudgetExceeded, ChainExhausted, PolicyRefused
from interlock._errors import ErrorClass
from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters.report._render import render_rollup, rollup_json
from interlock.adapters.simulator._behaviour import ServerError
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._config import parse_config
from interlock.policies._failover import FAILOVER, degraded_reason, is_degraded
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

[models.cheap]
provider = "a"
id = "sim-cheap-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 1.0 }

[models.big]
provider = "b"
id = "sim-big-1"
class = "flagship"
context_window = 100000
max_output_tokens = 1000
price = { input = 10.0, output = 10.0 }

[jobs.default]
chain = ["cheap", "big"]
allow_costlier_fallback = true

[jobs.frugal]
chain = ["cheap", "big"]

[jobs.tiered]
chain = ["flagship"]
on_exhausted = "degrade"
max_degrade = { classes = ["fast"] }

[jobs.only_cheap]
chain = ["cheap"]

[jobs.cached]
chain = ["big"]
cache_ttl_s = 600

[[rules]]
when = { tenant_tier = "free" }
exclude_classes = ["flagship"]

[[rules]]
when = { tenant_tier = "banned" }
exclude_classes = ["fast", "flagship"]

[tenants.freebie]
tier = "free"

[tenants.shady]
tier = "banned"

[tenants.bonly]
allowed_providers = ["b"]


[simulator.default]
output_tokens = { kind = "fixed", value = 5 }
"""


async def _open(tmp_path: Path, extra: str = "") -> Any:
    return interlock.open(parse_config(FLEET + extra), ledger_path=tmp_path / "ledger.sqlite")


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    async with await _open(tmp_path) as d:
        yield d


async def _rows(door: interlock.Door, tmp_path: Path) -> tuple[list[RequestRecord], list[AttemptRecord]]:
    await door.flush()
    async with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        return await store.fetch_requests(None, None, None), await store.fetch_attempts(None, None, None)


def _skipped(row: RequestRecord) -> list[tuple[str, str, str]]:
    """The ledger's ``skipped`` column, decoded: (model, reason, detail) each."""
    if not row.skipped:
        return []
    return [(s["model"], s["reason"], s["detail"]) for s in msgspec.json.decode(row.skipped)]


def _route(reply: interlock.ChatResponse) -> interlock.Route:
    assert reply.route is not None
    return reply.route


# -- the first choice, and one degraded rule -------------------------------------------------


async def test_a_rule_removing_the_whole_chain_degrades_the_answer(door: interlock.Door, tmp_path: Path) -> None:
    """A free tenant's rule leaves the flagship out: the max_degrade model answers, labelled degraded, saying why."""
    route = _route(await door.ask("hi", task="tiered", tenant="freebie"))
    assert (route.model, route.first_choice) == ("cheap", "big")
    assert route.degraded
    assert route.degraded_reason == "skipped first choice: rule; skipped big"
    assert [(s.model, s.reason, s.detail) for s in route.skipped] == [("big", "rule", "rules[0]")]
    requests, attempts = await _rows(door, tmp_path)
    (row,) = requests
    assert (row.model, row.first_choice, row.degraded) == ("cheap", "big", True)
    assert row.degraded_reason == route.degraded_reason
    assert _skipped(row) == [("big", "rule", "rules[0]")]
    assert [a.model for a in attempts] == ["cheap"]  # the flagship was never called


async def test_the_first_choice_answering_is_not_degraded(door: interlock.Door, tmp_path: Path) -> None:
    """The same job for a tenant no rule restricts: the flagship answers, not degraded, nothing skipped."""
    route = _route(await door.ask("hi", task="tiered", tenant="acme"))
    assert (route.model, route.first_choice, route.degraded, route.skipped) == ("big", "big", False, ())
    (row,), _ = await _rows(door, tmp_path)
    assert (row.first_choice, row.degraded, row.skipped) == ("big", False, "")


async def test_an_allow_list_leaving_out_the_first_choice_degrades(door: interlock.Door, tmp_path: Path) -> None:
    """A tenant allowed provider b only is served by big, not its job's first choice: degraded, and why."""
    route = _route(await door.ask("hi", tenant="bonly"))
    assert (route.model, route.first_choice, route.degraded) == ("big", "cheap", True)
    assert route.degraded_reason == "skipped first choice: tenant_allow_list; skipped cheap"
    assert [(s.model, s.reason) for s in route.skipped] == [("cheap", "tenant_allow_list")]
    (row,), _ = await _rows(door, tmp_path)
    assert _skipped(row) == [("cheap", "tenant_allow_list", "provider 'a'")]


async def test_a_skipped_candidate_is_recorded_when_the_answer_is_not_degraded(
    door: interlock.Door, tmp_path: Path
) -> None:
    """A costlier fallback the job does not allow is skipped; the first choice answers, and the skip is still kept."""
    route = _route(await door.ask("hi", task="frugal"))
    assert (route.model, route.first_choice, route.degraded) == ("cheap", "cheap", False)
    assert [(s.model, s.reason) for s in route.skipped] == [("big", "costlier_not_allowed")]
    assert "20 > 2 USD/M of cheap" in route.skipped[0].detail
    (row,), _ = await _rows(door, tmp_path)
    assert not row.degraded
    assert [(m, r) for m, r, _ in _skipped(row)] == [("big", "costlier_not_allowed")]


async def test_a_budget_refusal_at_run_time_is_a_skipped_candidate(tmp_path: Path) -> None:
    """A candidate its provider's budget refuses is on the route's and the row's skipped list, reason budget."""
    async with await _open(tmp_path, "[budgets.providers.a]\nusd_per_day = 0.0000001\n") as door:
        route = _route(await door.ask("hi"))
        requests, attempts = await _rows(door, tmp_path)
    assert (route.model, route.first_choice, route.degraded) == ("big", "cheap", True)
    assert route.degraded_reason == "budget"
    (skip,) = route.skipped
    assert (skip.model, skip.reason) == ("cheap", "budget")
    assert "budget provider:a" in skip.detail
    assert [(m, r) for m, r, _ in _skipped(requests[0])] == [("cheap", "budget")]
    assert [(a.model, a.outcome) for a in attempts] == [("cheap", "skipped"), ("big", "ok")]


async def test_a_fallback_after_a_failure_names_the_failures(door: interlock.Door, tmp_path: Path) -> None:
    """The first choice fails (a 500, retried once): the fallback's answer is degraded by server_error."""
    assert door.simulator is not None
    door.simulator.script("sim-cheap-1", [ServerError(), ServerError()])
    route = _route(await door.ask("hi"))
    assert (route.model, route.first_choice, route.degraded) == ("big", "cheap", True)
    assert route.degraded_reason == "server_error,server_error"
    assert route.skipped == ()  # it was tried, not skipped


# -- who made it: the provider's model id, cache hits ---------------------------------------


async def test_served_model_is_on_the_route_and_the_rows(door: interlock.Door, tmp_path: Path) -> None:
    """The model id the provider said answered travels beside the config name."""
    route = _route(await door.ask("hi"))
    assert (route.model, route.served_model) == ("cheap", "sim-cheap-1")
    (row,), (attempt,) = await _rows(door, tmp_path)
    assert (row.model, row.served_model, attempt.served_model) == ("cheap", "sim-cheap-1", "sim-cheap-1")


async def test_a_cache_hit_keeps_who_made_the_answer(door: interlock.Door, tmp_path: Path) -> None:
    """A hit names the model, provider and class that made the answer, flagged a hit, at zero cost."""
    first = await door.ask("same question", task="cached")
    second = await door.ask("same question", task="cached")
    assert second.content == first.content
    made, hit = _route(first), _route(second)
    assert hit.cache_hit
    assert not made.cache_hit
    assert (hit.model, hit.provider, hit.model_class) == ("big", "b", "flagship")
    assert (hit.first_choice, hit.served_model) == ("big", "sim-big-1")
    assert (hit.cost_cents, hit.attempts) == (0.0, ())
    requests, attempts = await _rows(door, tmp_path)
    assert [(r.cache_hit, r.model, r.provider, r.model_class) for r in requests] == [
        (False, "big", "b", "flagship"),
        (True, "big", "b", "flagship"),
    ]
    assert (requests[1].served_model, requests[1].cost_cents) == ("sim-big-1", 0.0)
    assert len(attempts) == 1  # the hit called nobody


# -- policy refusals and exhausted chains -----------------------------------------------------


async def test_pii_with_no_local_model_is_refused_naming_the_rule(door: interlock.Door, tmp_path: Path) -> None:
    """No class may receive PII: a typed, non-retryable refusal naming ``pii``, not an overloaded chain."""
    with pytest.raises(PolicyRefused) as info:
        await door.ask("my ssn is 123", sensitivity="pii")
    assert info.value.rule == "pii"
    assert "may not receive PII" in info.value.detail
    assert info.value.kind == ErrorClass.POLICY_REFUSAL
    assert info.value.kind not in FAILOVER  # no other candidate, nor a retry, would be allowed it
    (row,), attempts = await _rows(door, tmp_path)
    assert (row.outcome, row.error) == ("error", "policy_refusal")
    assert "refused by rule pii" in row.error_detail
    assert {m for m, r, _ in _skipped(row)} == {"cheap", "big"}
    assert attempts == []


async def test_a_rule_leaving_no_candidate_names_the_rule(door: interlock.Door) -> None:
    """A tier rule that excludes every class of the fleet: refused by ``rule``, its key in the detail."""
    with pytest.raises(PolicyRefused) as info:
        await door.ask("hi", tenant="shady")
    assert (info.value.rule, info.value.detail) == ("rule", "rules[1]")


async def test_an_allow_list_leaving_no_candidate_is_refused(door: interlock.Door) -> None:
    with pytest.raises(PolicyRefused) as info:
        await door.ask("hi", task="only_cheap", tenant="bonly")
    assert info.value.rule == "tenant_allow_list"
    assert "cheap: provider 'a'" in info.value.detail


async def test_an_input_no_window_holds_is_refused_by_the_context_window_rule(door: interlock.Door) -> None:
    """Size alone: refused by rule context_window, naming each window, never a retryable fleet failure."""
    with pytest.raises(PolicyRefused) as info:
        await door.ask("hi", max_tokens=200_000)
    assert info.value.rule == "context_window"
    assert "fits no candidate's context window" in str(info.value)


async def test_an_exhausted_chain_has_a_detail_in_the_ledger(door: interlock.Door, tmp_path: Path) -> None:
    """Every candidate failed: the row's error_detail says which model failed how, the error keeps their status."""
    assert door.simulator is not None
    door.simulator.script("sim-cheap-1", [ServerError()] * 2)
    door.simulator.script("sim-big-1", [ServerError()] * 2)
    with pytest.raises(ChainExhausted) as info:
        await door.ask("hi")
    assert info.value.status == 500
    (row,), _ = await _rows(door, tmp_path)
    assert row.error_detail == "cheap: server_error; cheap: server_error; big: server_error; big: server_error"


async def test_an_exhausted_budget_is_still_budget_exceeded(tmp_path: Path) -> None:
    """Money refusing every candidate is not a policy refusal: the budget that is full is named."""
    async with await _open(tmp_path, "[budgets.tenants.acme]\nusd_per_day = 0.0000001\n") as door:
        with pytest.raises(BudgetExceeded):
            await door.ask("hi", tenant="acme")


# -- floating aliases in the report -----------------------------------------------------------

DATED = "gpt-x-2025-06-01"


def _openai_stream(model: str, text: str) -> bytes:
    """A chat-completions SSE stream as OpenAI documents it: role, content, finish, usage, [DONE]."""
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": model}

    def chunk(**fields: Any) -> bytes:
        return b"data: " + msgspec.json.encode({**base, **fields}) + b"\n\n"

    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    return (
        chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        + chunk(choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        + chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        + chunk(choices=[], usage=usage)
        + b"data: [DONE]\n\n"
    )


@pytest.fixture
async def aliased() -> AsyncIterator[str]:
    """An OpenAI-compatible server on 127.0.0.1 that answers every model as ``DATED``, one byte per write."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for byte in _openai_stream(DATED, "héllo wörld"):  # cuts inside UTF-8 and inside data: lines
            await response.write(bytes([byte]))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def test_a_floating_alias_that_served_traffic_is_flagged_in_the_report(aliased: str, tmp_path: Path) -> None:
    """The provider answered ``gpt-x`` as a dated model: the ledger keeps both, the report flags the alias."""
    extra = f"""
[providers.up]
kind = "openai_compatible"
base_url = "{aliased}"
probe = {{ interval_s = 3600 }}

[models.floaty]
provider = "up"
id = "gpt-x"
allow_floating = true
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = {{ input = 1.0, output = 1.0 }}
"""
    async with await _open(tmp_path, extra) as door:
        reply = await door.ask("hi", model="floaty")
        await door.ask("hi", model="cheap")  # the simulator answers as the configured id: no alias
        model_ids = {name: m.id for name, m in door.config.models.items()}
        requests, attempts = await _rows(door, tmp_path)
    assert reply.content == "héllo wörld"
    assert (_route(reply).model, _route(reply).served_model) == ("floaty", DATED)
    assert [(r.model, r.served_model) for r in requests] == [("floaty", DATED), ("cheap", "sim-cheap-1")]
    result = rollup(requests, attempts, now=max(r.ts for r in requests) + 1, model_ids=model_ids)
    assert [(a.model, a.configured_id, a.served_model, a.attempts) for a in result.aliases] == [
        ("floaty", "gpt-x", DATED, 1)
    ]
    console = Console(record=True, width=200)
    render_rollup(result, console)
    text = console.export_text()
    assert f"alias: floaty (up) gpt-x -> {DATED}, 1 answered" in text
    assert "sim-cheap-1 ->" not in text
    assert msgspec.json.decode(rollup_json(result))["aliases"][0]["served_model"] == DATED
    assert rollup(requests, attempts, now=result.generated_at).aliases == ()  # no configured ids: nothing to compare
    # The operator's way: `interlock report --config` names the configured ids.
    config_file = tmp_path / "fleet.toml"
    config_file.write_text(FLEET + extra)
    ledger = str(tmp_path / "ledger.sqlite")
    done = await anyio.to_thread.run_sync(_report_json, ledger, str(config_file))
    assert [(a["model"], a["served_model"]) for a in msgspec.json.decode(done)["aliases"]] == [("floaty", DATED)]


def _report_json(ledger: str, config: str) -> str:
    """``interlock report --json --config`` run in a thread of its own (it runs its own event loop): its stdout."""
    import contextlib
    import io

    from interlock.actors.cli._report import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--ledger", ledger, "--config", config, "--json"]) == 0
    return out.getvalue()


def test_an_escalation_past_a_skipped_first_choice_is_still_degraded() -> None:
    """A cascade's escalation is not degraded only when the first choice itself answered first."""
    assert not is_degraded("a", "b", resumed=False, escalated=True)
    assert is_degraded("a", "b", resumed=False, escalated=True, first_skipped=True)
    reason = degraded_reason([], resumed=False, winner_hedged=False, skipped=["a"], first_skip="sensitivity")
    assert reason == "skipped first choice: sensitivity; skipped a"
    mixed = degraded_reason(["timeout"], resumed=False, winner_hedged=False, skipped=["a"], first_skip="rule")
    assert mixed == "skipped first choice: rule; timeout; skipped a"

"""A real redis-server taken away mid-run, and brought back; a process holding Redis leases SIGKILLed.

While the server is down, each rail does what ``[state]`` says: the cache answers a miss and
skips its stores, budgets refuse (closed, the default; a retryable 503 at the gateway) or serve
without a reservation (open), leases likewise; every decision is in the ledger's rows or on the
``interlock.state`` logger. When the server returns, service resumes with no restart of the door.
A process killed while it holds slots leaves them taken until their TTL, then the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import anyio
import msgspec
import openai
import pytest
from child_process import child
from redis_lease_worker import CONFIG as LEASE_CONFIG
from redis_server import RedisServer
from test_gateway import serving

import interlock
from interlock._clock import RealClock
from interlock._errors import AdmissionRejected, ChainExhausted
from interlock._types import ChatRequest, Message
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.rails._lease import LeaseRail
from interlock.actors.rails._state_outage import RETRY_AFTER_S
from interlock.actors.request._attempt import Attempt
from interlock.adapters.gateway._app import VirtualKey
from interlock.adapters.gateway._failures import http_failure
from interlock.adapters.stores import _redis_leases
from interlock.adapters.stores._holder import Holder
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._redis_state import RedisStateStore
from interlock.policies._budget import BudgetConfig, TenantBudget
from interlock.policies._config import LimitsConfig, ModelConfig, parse_config
from interlock.policies._pricing import Price
from interlock.policies._routing import Candidate

pytestmark = pytest.mark.anyio

DOOR_CONFIG = """
[providers.sim]
kind = "simulator"
format = "openai"
probe = {{ interval_s = 3600 }}

[models.solo]
provider = "sim"
id = "sim-solo-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = {{ input = 1.0, output = 1.0 }}

[jobs.chat]
chain = ["solo"]
cache_ttl_s = 600

[budgets.tenants."株式会社🙂"]
usd_per_day = 5.0

[limits]
per_provider = {{ sim = 8 }}

[state]
url = "{url}"

[simulator.default]
output_tokens = {{ kind = "fixed", value = 3 }}
"""
PROMPT = "用一句话介绍 Redis 🚀"


def state_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """The lines of the ``interlock.state`` logger so far, at ``level`` or above."""
    return [r.getMessage() for r in caplog.records if r.name == "interlock.state" and r.levelno >= level]


async def test_a_door_degrades_while_redis_is_down_and_resumes_when_it_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: the cache misses, the budget refuses as a retryable 503, all recorded; back: answers and hits again."""
    caplog.set_level(logging.DEBUG, logger="interlock.state")
    ledger = tmp_path / "ledger.sqlite"
    with RedisServer(tmp_path / "redis") as server:
        config = parse_config(DOOR_CONFIG.format(url=server.url))
        async with interlock.open(config, ledger_path=ledger) as door:
            first = await door.ask(PROMPT, task="chat", tenant="株式会社🙂")
            assert first.route is not None
            assert not first.route.cache_hit
            again = await door.ask(PROMPT, task="chat", tenant="株式会社🙂")
            assert again.route is not None
            assert again.route.cache_hit
            assert again.content == first.content

            server.stop()
            with pytest.raises(ChainExhausted) as refused:
                await door.ask(PROMPT, task="chat", tenant="株式会社🙂")  # the cached answer is out of reach too
            ((model, cause),) = refused.value.errors
            assert isinstance(cause, AdmissionRejected)
            assert (model, cause.reason, cause.retry_after) == ("solo", "budget_state_unavailable", RETRY_AFTER_S)
            answer = http_failure(refused.value)
            assert (answer.status, answer.should_retry) == (503, True)
            assert answer.headers()["retry-after"] == "1"
            down = state_lines(caplog)
            assert any("cache rail (answered as a miss)" in line for line in down), down
            assert any("budget rail (refused)" in line and server.url in line for line in down), down

            server.start()  # the same port, an empty server: persistence is off
            back = await door.ask(PROMPT, task="chat", tenant="株式会社🙂")
            assert back.route is not None
            assert not back.route.cache_hit  # the restarted server lost the cache, as configured
            hit = await door.ask(PROMPT, task="chat", tenant="株式会社🙂")
            assert hit.route is not None
            assert hit.route.cache_hit
            assert any("answers again for the budget rail: 1 refused" in line for line in state_lines(caplog))
    async with SqliteLedgerStore(ledger) as books:
        requests = await books.fetch_requests(None, None, None)
        attempts = await books.fetch_attempts(None, None, None)
    assert [r.outcome for r in requests] == ["ok", "ok", "error", "ok", "ok"]
    assert [r.cache_hit for r in requests] == [False, True, False, False, True]
    down_row = requests[2]
    assert down_row.error == "overloaded"
    skipped = msgspec.json.decode(down_row.skipped)
    assert [(s["model"], s["reason"]) for s in skipped] == [("solo", "budget_state_unavailable")]
    refused_attempts = [a for a in attempts if a.request_id == down_row.request_id]
    assert [(a.outcome, a.error_detail) for a in refused_attempts] == [("skipped", "budget_state_unavailable")]


PRICE = Price(input=8.0, output=8.0)
MODEL = ModelConfig(
    provider="p", id="mini-2024-01-01", model_class="fast", context_window=10_000, max_output_tokens=50, price=PRICE
)
REQUEST = ChatRequest(messages=(Message.text("user", "こんにちは🙂"),), tenant="acme", max_tokens=20)


def attempt() -> Attempt:
    return Attempt(Candidate(name="mini", model=MODEL, provider="p", position=0), 1, 1, 0.0, hedge=False)


async def test_open_serves_without_the_rails_and_closed_refuses_until_redis_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_outage open the budget and lease rails admit unheld while Redis is down; closed refuses; both resume."""
    caplog.set_level(logging.DEBUG, logger="interlock.state")
    budgets = BudgetConfig(tenants={"acme": TenantBudget(usd_per_day=1.0)})
    limits = LimitsConfig(per_provider={"p": 4})
    clock = RealClock()
    with RedisServer(tmp_path / "redis") as server:
        async with RedisStateStore(server.url) as store:
            open_budget = BudgetRail(store.budgets, budgets, clock, on_outage="open")
            open_lease = LeaseRail(store.leases, limits, clock, on_outage="open")
            closed_budget = BudgetRail(store.budgets, budgets, clock)
            closed_lease = LeaseRail(store.leases, limits, clock, on_outage="closed")
            held = attempt()
            await open_budget.enter(REQUEST, held, 0)
            await open_lease.enter(REQUEST, held, 0)
            assert set(held.holds) == {"budget", "lease"}
            server.stop()
            await open_budget.leave(held)  # the settlement cannot be written: let go to its TTL, not raised
            await open_lease.leave(held)
            served = attempt()
            await open_budget.enter(REQUEST, served, 0)
            await open_lease.enter(REQUEST, served, 0)
            assert served.holds == {}  # admitted, holding nothing: there is nowhere to hold it
            for rail, reason in ((closed_budget, "budget"), (closed_lease, "lease")):
                with pytest.raises(AdmissionRejected) as refused:
                    await rail.enter(REQUEST, attempt(), 0)
                assert refused.value.reason == f"{reason}_state_unavailable"
            budget_record = open_budget.outage.statistics()
            assert (budget_record.down, budget_record.served, budget_record.lost) == (True, 1, 1)
            assert server.url in budget_record.problem
            assert closed_lease.outage.statistics().refused == 1
            server.start()
            resumed = attempt()
            await closed_budget.enter(REQUEST, resumed, 0)
            await closed_lease.enter(REQUEST, resumed, 0)
            assert set(resumed.holds) == {"budget", "lease"}
            assert not closed_budget.outage.down
            assert await store.leases.holders("provider:p", time.time()) == 1
    lines = state_lines(caplog, logging.DEBUG)  # the first decision of an outage is a WARNING, the rest DEBUG
    assert any("still unavailable for the budget rail (served without it)" in line for line in lines), lines
    assert any("still unavailable for the lease rail (served without it)" in line for line in lines), lines


async def test_a_killed_holders_redis_leases_free_at_once_on_its_host_and_the_others_go_on(tmp_path: Path) -> None:
    """SIGKILL a process holding every slot: on its host the next call finds it dead and takes a slot, TTL or not."""
    ttl = 60  # far longer than the test: only the liveness check can free the slots this soon
    with RedisServer(tmp_path / "redis") as server:
        spec = {"state": server.url, "ledger": str(tmp_path / "holder.sqlite"), "slots": 2, "lease_ttl_s": ttl}
        config = parse_config(LEASE_CONFIG.format(**spec, ttft_s=0.0))
        async with interlock.open(config, ledger_path=tmp_path / "mine.sqlite") as door:
            async with child("redis_lease_worker.py", json.dumps(spec)) as holder:
                assert await holder.line() == "held"
                async with RedisStateStore(server.url) as state:
                    assert await state.leases.holders("all", time.time()) == 2
                os.kill(holder.pid, signal.SIGKILL)
                assert await holder.wait() == -signal.SIGKILL
            replies = []

            async def one() -> None:
                replies.append(await door.ask("a slot, please", task="hold"))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:  # every slot is free again, not just one
                    for _ in range(2):
                        tg.start_soon(one)
            assert len(replies) == 2
            assert all(r.content for r in replies)


async def test_a_redis_lease_of_another_host_is_left_to_its_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder on another machine cannot be judged from here: its slot stays taken until it expires."""
    with RedisServer(tmp_path / "redis") as server:
        async with RedisStateStore(server.url) as state:
            now = time.time()
            elsewhere = Holder("linux:another-boot-id:pid:[1]", 1, 1)  # pid 1 runs here: it must not matter
            with monkeypatch.context() as patch:
                patch.setattr(_redis_leases, "this_process", lambda: elsewhere)
                assert await state.leases.acquire("scope", 1, "theirs", now, 5.0)
            assert not await state.leases.acquire("scope", 1, "mine", now + 1.0, 5.0)
            assert await state.leases.acquire("scope", 1, "mine", now + 5.5, 5.0)  # expired: free
            # And a dead holder of this host is freed at once, whatever its TTL.
            gone = Holder(_redis_leases.this_process().host, 2**22 + 7, 1)  # no such pid
            with monkeypatch.context() as patch:
                patch.setattr(_redis_leases, "this_process", lambda: gone)
                assert await state.leases.acquire("other", 1, "dead", now, 600.0)
            assert await state.leases.acquire("other", 1, "alive", now + 1.0, 600.0)
            assert await state.leases.holders("other", now + 2.0) == 1


RESPONSES_CONFIG = """
[providers.sim]
kind = "simulator"
format = "openai"
probe = {{ interval_s = 3600 }}

[models.solo]
provider = "sim"
id = "sim-solo-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = {{ input = 1.0, output = 1.0 }}

[jobs.default]
chain = ["solo"]

[state]
url = "{url}"

[simulator.default]
output_tokens = {{ kind = "fixed", value = 3 }}
"""


async def test_stored_responses_while_redis_is_down_answer_and_refuse_truthfully(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: a new answer still reaches the caller (not stored, logged); reading or continuing one is a 503."""
    keys = {"sk-resp-0123456789abcdef": VirtualKey(tenant="acme", caller="svc")}
    with RedisServer(tmp_path / "redis") as server:
        config = parse_config(RESPONSES_CONFIG.format(url=server.url))
        async with interlock.open(config, ledger_path=tmp_path / "ledger.sqlite") as door, serving(
            door, virtual_keys=keys
        ) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=next(iter(keys)), max_retries=0)
            kept = await client.responses.create(model="default", input="remember me")
            assert (await client.responses.retrieve(kept.id)).id == kept.id
            server.stop()
            fresh = await client.responses.create(model="default", input="and this one?")
            assert fresh.output_text  # made and paid for: the caller gets it
            assert any("was answered but not stored" in r.getMessage() for r in caplog.records)
            for call in (
                client.responses.retrieve(kept.id),
                client.responses.create(model="default", input="go on", previous_response_id=kept.id),
            ):
                with pytest.raises(openai.APIStatusError) as refused:
                    await call
                assert refused.value.status_code == 503  # a dependency down: retry, not a bug (500)
                assert refused.value.response.headers["retry-after"] == "1"
            server.start()  # persistence off: a new, empty server; storing and continuing work again
            again = await client.responses.create(model="default", input="remember me again")
            follow = await client.responses.create(model="default", input="go on", previous_response_id=again.id)
            assert follow.output_text
            await client.close()

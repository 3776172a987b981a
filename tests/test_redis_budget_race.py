"""Four OS processes on two "hosts" race one tenant's budget through a real redis-server, on CJK/emoji prompts.

Each host is a pair of processes sharing a local SQLite ledger file; the only thing the hosts
share is Redis. The upstream bills like a byte-level BPE tokenizer at its worst
(tests/metered_upstream.py), so only a reservation that is a true bound keeps the spend in. While
the processes run, a watcher reads the budget from Redis over and over: settled spend plus the
reservations in flight never passes the limit. Afterwards every book agrees: Redis's settled
spend, the two hosts' ledgers, what the workers were told, and the upstream's own tally.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_process import child
from metered_upstream import MeteredUpstream, serving
from redis_server import RedisServer

from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._redis_state import RedisStateStore
from interlock.policies._budget import BudgetScope, day_bucket

pytestmark = pytest.mark.anyio

LIMIT_CENTS = 10.0
PRICE_PER_TOKEN_CENTS = 8.0 / 1_000_000 * 100  # the workers' model: 8 USD per million tokens, in and out
PROMPT = "请用一句话总结这段文字并给出三个关键词🙂🚀。" * 8  # 176 characters, 544 UTF-8 bytes
TENANT = BudgetScope.tenant("株式会社🙂").key
HOSTS, PER_HOST, TASKS = ("east", "west"), 2, 6


async def run_worker(spec: dict[str, Any], started: anyio.Event, ready: list[int]) -> dict[str, Any]:
    """One worker process: opened, held until every worker is ready, then run to the end; its JSON stats."""
    async with child("redis_budget_worker.py", json.dumps(spec)) as proc:
        assert await proc.line() == "ready"
        ready.append(proc.pid)
        await started.wait()
        await proc.send("go")
        line = await proc.line(timeout=45)
        assert await proc.wait() == 0, await proc.stderr()
        result: dict[str, Any] = json.loads(line)
        return result


async def ledger_cents(path: Path) -> float:
    """The cost of every request in one host's ledger."""
    async with SqliteLedgerStore(path) as ledger:
        return sum(r.cost_cents for r in await ledger.fetch_requests(None, None, None))


class Watcher:
    """Reads the tenant's budget from Redis until told to stop; keeps the highest figures it saw."""

    def __init__(self, store: RedisStateStore) -> None:
        self.store = store
        self.max_used = 0.0
        self.reads = 0
        self.stop = anyio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            used = await self.store.budgets.used(TENANT, day_bucket(now), now)
            self.max_used = max(self.max_used, used)
            self.reads += 1
            await anyio.sleep(0.002)


async def test_four_processes_on_two_hosts_never_overspend_a_budget_in_redis(tmp_path: Path) -> None:
    """2 hosts x 2 processes x 6 tasks spend at most 10 cents, by Redis, by both ledgers and by the upstream."""
    ledgers = {host: tmp_path / f"{host}-ledger.sqlite" for host in HOSTS}
    for path in ledgers.values():
        async with SqliteLedgerStore(path):
            pass  # each host's schema first, so its pair races on the budget, not on migrations
    with RedisServer(tmp_path / "redis") as redis_server:
        await race(redis_server, ledgers)


async def race(redis_server: RedisServer, ledgers: dict[str, Path]) -> None:
    """The race itself, against a running server, and every book checked after it."""
    stats: list[dict[str, Any]] = []
    days = {day_bucket(time.time())}
    async with (
        RedisStateStore(redis_server.url) as state,
        serving(MeteredUpstream(answer_tokens=40)) as upstream,
    ):
        started, ready, watcher = anyio.Event(), [], Watcher(state)

        async def one(host: str) -> None:
            spec = {
                "upstream": upstream.base_url(), "state": redis_server.url, "ledger": str(ledgers[host]),
                "usd_per_day": LIMIT_CENTS / 100, "prompt": PROMPT, "max_tokens": 20, "tasks": TASKS, "asks": 60,
            }  # fmt: skip
            stats.append(await run_worker(spec, started, ready))

        async with anyio.create_task_group() as tg:
            for host in HOSTS:
                for _ in range(PER_HOST):
                    tg.start_soon(one, host)
            with anyio.fail_after(30):
                while len(ready) < len(HOSTS) * PER_HOST:
                    await anyio.sleep(0.01)
            async with anyio.create_task_group() as watching:
                watching.start_soon(watcher.run)
                started.set()
                with anyio.fail_after(50):
                    while len(stats) < len(HOSTS) * PER_HOST:
                        await anyio.sleep(0.01)
                watcher.stop.set()
        days.add(day_bucket(time.time()))  # the run may cross midnight UTC
        settled = sum([await state.budgets.spent(TENANT, day) for day in days])
        in_flight = sum([await state.budgets.reserved(TENANT, day, time.time()) for day in days])
    books = [await ledger_cents(path) for path in ledgers.values()]
    billed = (upstream.billed_input + upstream.billed_output) * PRICE_PER_TOKEN_CENTS
    print(f"settled {settled:.4f} cents, ledgers {books}, billed {billed:.4f}, watcher reads {watcher.reads}")
    assert [s["errors"] for s in stats] == [[]] * len(stats)
    assert all(s["refused"] == TASKS for s in stats)  # every task ran until the budget said no
    assert watcher.reads > 10
    assert watcher.max_used <= LIMIT_CENTS + 1e-9  # settled + in flight, read atomically, never past the limit
    assert in_flight == 0.0
    assert settled <= LIMIT_CENTS + 1e-9
    assert all(cents > 0 for cents in books)  # both hosts spent: the budget was shared, not one host's
    assert sum(books) == pytest.approx(settled)
    assert billed == pytest.approx(settled)  # the upstream's invoice and interlock's books agree
    assert sum(s["cents"] for s in stats) == pytest.approx(settled)
    one_call = (544 + 6 + 20) * PRICE_PER_TOKEN_CENTS
    assert settled > LIMIT_CENTS - 4 * one_call  # the budget was really used up, not refused early

"""Four OS processes, each with its own door, race for one 10-cent tenant budget with CJK and emoji prompts.

The upstream bills like a byte-level BPE tokenizer at its worst (tests/metered_upstream.py), so a
reservation sized by a guess of four characters per token would let the processes overspend. The
reservation is a bound instead, and every book agrees afterwards: the state store's settled spend,
the four ledgers, and the upstream's own tally are one figure, and it is within the limit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_process import child
from metered_upstream import MeteredUpstream, serving

from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._state_store import SqliteStateStore

pytestmark = pytest.mark.anyio

LIMIT_CENTS = 10.0
PRICE_PER_TOKEN_CENTS = 8.0 / 1_000_000 * 100  # the workers' model: 8 USD per million tokens, in and out
PROMPT = "请用一句话总结这段文字并给出三个关键词🙂🚀。" * 8  # 176 characters, 544 UTF-8 bytes
WORKERS, TASKS = 4, 6


async def run_worker(spec: dict[str, Any], started: anyio.Event, ready: list[int]) -> dict[str, Any]:
    """One worker process: opened, held until every worker is ready, then run to the end; its JSON stats."""
    async with child("budget_worker.py", json.dumps(spec)) as proc:
        assert await proc.line() == "ready"
        ready.append(proc.pid)
        await started.wait()
        await proc.send("go")
        line = await proc.line(timeout=45)
        assert await proc.wait() == 0, await proc.stderr()
        result: dict[str, Any] = json.loads(line)
        return result


async def ledger_cents(path: Path) -> float:
    """The cost of every request in one worker's ledger."""
    async with SqliteLedgerStore(path) as ledger:
        return sum(r.cost_cents for r in await ledger.fetch_requests(None, None, None))


def settled_cents(state: Path, scope: str) -> float:
    """The settled spend of ``scope`` in the state file, over every day (the run may cross midnight UTC)."""
    with contextlib.closing(sqlite3.connect(state)) as conn:
        (cents,) = conn.execute("SELECT COALESCE(SUM(cents), 0) FROM budget_spend WHERE scope = ?", (scope,)).fetchone()
    return float(cents)


async def test_four_processes_never_overspend_a_ten_cent_budget(tmp_path: Path) -> None:
    """4 processes x 6 concurrent tasks on CJK/emoji prompts spend at most 10 cents, by every book."""
    state = tmp_path / "state.sqlite"
    async with SqliteStateStore(state):
        pass  # the schema first, so the workers race on the budget, not on migrations
    stats: list[dict[str, Any]] = []
    async with serving(MeteredUpstream(answer_tokens=40)) as upstream:
        started, ready = anyio.Event(), []

        async def one(i: int) -> None:
            spec = {
                "upstream": upstream.base_url(), "state": str(state), "ledger": str(tmp_path / f"ledger-{i}.sqlite"),
                "usd_per_day": LIMIT_CENTS / 100, "prompt": PROMPT, "max_tokens": 20, "tasks": TASKS, "asks": 60,
            }  # fmt: skip
            stats.append(await run_worker(spec, started, ready))

        async with anyio.create_task_group() as tg:
            for i in range(WORKERS):
                tg.start_soon(one, i)
            with anyio.fail_after(30):
                while len(ready) < WORKERS:
                    await anyio.sleep(0.01)
            started.set()
    settled = settled_cents(state, "tenant:acme")
    ledgers = [await ledger_cents(tmp_path / f"ledger-{i}.sqlite") for i in range(WORKERS)]
    billed = (upstream.billed_input + upstream.billed_output) * PRICE_PER_TOKEN_CENTS
    print(f"settled {settled:.4f} cents, ledgers {sum(ledgers):.4f}, billed {billed:.4f}, calls {upstream.requests}")
    assert [s["errors"] for s in stats] == [[]] * WORKERS
    assert all(s["refused"] == TASKS for s in stats)  # every task ran until the budget said no
    assert settled <= LIMIT_CENTS + 1e-9
    assert sum(ledgers) == pytest.approx(settled)
    assert billed == pytest.approx(settled)  # the upstream's invoice and interlock's books agree
    assert sum(s["cents"] for s in stats) == pytest.approx(settled)
    one_call = (544 + 6 + 20) * PRICE_PER_TOKEN_CENTS
    assert settled > LIMIT_CENTS - 4 * one_call  # the budget was really used up, not refused early

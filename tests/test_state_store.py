"""The SQLite state store on real files: cache, budgets, leases, and several OS processes sharing one file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from interlock._errors import BudgetExceeded
from interlock._types import ChatRequest, Message, Usage
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._state_schema import SCHEMA_VERSION, StateStoreError
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.policies._budget import (
    BudgetConfig,
    BudgetedCall,
    BudgetPlan,
    BudgetScope,
    CallerBudget,
    ProviderBudget,
    TenantBudget,
    day_bucket,
    passes_reservation,
    plan_reservations,
    reservation_cents,
    settle_amount,
)
from interlock.policies._cache_key import cache_key
from interlock.policies._pricing import Price

NOW = 1_700_000_000.0
DAY = "2023-11-14"
TENANT = BudgetScope.tenant("acme").key
CALLER = BudgetScope.caller("acme", "svc").key
PROVIDER = BudgetScope.provider("openai").key


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh state file."""
    return tmp_path / "state.sqlite"


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteStateStore]:
    """The store on ``path``, open for the block."""
    async with SqliteStateStore(path) as store:
        yield store


async def reserve(
    store: SqliteStateStore, rid: str, amount: float, *scopes: tuple[str, float], now: float = NOW, ttl: float = 600.0
) -> None:
    """Reserve ``amount`` cents for today on ``scopes``, expiring ``ttl`` seconds after ``now``."""
    await store.budgets.reserve(list(scopes), day=DAY, amount=amount, reservation_id=rid, now=now, expires_at=now + ttl)


# -- cache -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cache_hit_until_expiry_then_miss(path: Path) -> None:
    """A stored value is a hit before its expiry, a miss from then on, and purge removes only expired entries."""
    async with opened(path) as store:
        await store.cache.put("k1", b"answer", NOW + 10)
        await store.cache.put("k2", b"later", NOW + 100)
        assert await store.cache.get("k1", NOW + 9.9) == b"answer"
        assert await store.cache.get("k1", NOW + 10) is None
        assert await store.cache.get("absent", NOW) is None
        assert await store.cache.purge(NOW + 10) == 1
        assert await store.cache.get("k2", NOW + 10) == b"later"


@pytest.mark.anyio
async def test_cache_put_replaces(path: Path) -> None:
    """A second put under a key replaces the value and its expiry."""
    async with opened(path) as store:
        await store.cache.put("k", b"old", NOW + 10)
        await store.cache.put("k", b"new", NOW + 20)
        assert await store.cache.get("k", NOW + 15) == b"new"


@pytest.mark.anyio
async def test_cache_keys_keep_tenants_apart(path: Path) -> None:
    """The same request cached for one tenant is a miss for another, a hit for the first."""
    request = ChatRequest(messages=(Message.text("user", "hi"),))
    async with opened(path) as store:
        await store.cache.put(cache_key(request, "chat", "acme"), b"acme's answer", NOW + 60)
        assert await store.cache.get(cache_key(request, "chat", "globex"), NOW) is None
        assert await store.cache.get(cache_key(request, "chat", "acme"), NOW) == b"acme's answer"


# -- budgets ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reserve_settle_release_arithmetic(path: Path) -> None:
    """A reservation holds its amount on each scope; settle swaps it for the actual spend; release drops it."""
    async with opened(path) as store:
        b = store.budgets
        await reserve(store, "r1", 4.0, (TENANT, 100.0), (PROVIDER, 100.0))
        assert await b.reserved(TENANT, DAY, NOW) == 4.0
        assert await b.reserved(PROVIDER, DAY, NOW) == 4.0
        assert await b.settle("r1", 2.5) is True
        assert (await b.spent(TENANT, DAY), await b.reserved(TENANT, DAY, NOW)) == (2.5, 0.0)
        assert await b.spent(PROVIDER, DAY) == 2.5
        assert await b.settle("r1", 2.5) is False  # settling twice never double counts
        await reserve(store, "r2", 7.0, (TENANT, 100.0))
        assert await b.used(TENANT, DAY, NOW) == 9.5
        assert await b.release("r2") is True
        assert await b.release("r2") is False
        assert await b.used(TENANT, DAY, NOW) == 2.5


@pytest.mark.anyio
async def test_budget_exceeded_names_first_full_scope_and_holds_nothing(path: Path) -> None:
    """A refusal names the first scope without room, its limit and its spend, and reserves on no scope."""
    async with opened(path) as store:
        await reserve(store, "r1", 4.0, (TENANT, 5.0))
        with pytest.raises(BudgetExceeded) as info:
            await reserve(store, "r2", 2.0, (CALLER, 10.0), (TENANT, 5.0), (PROVIDER, 1.0))
        assert (info.value.budget, info.value.limit, info.value.spent, info.value.unit) == (TENANT, 5.0, 4.0, "cents")
        assert await store.budgets.used(CALLER, DAY, NOW) == 0.0
        assert await store.budgets.used(PROVIDER, DAY, NOW) == 0.0


@pytest.mark.anyio
async def test_a_budget_fills_exactly_to_its_limit(path: Path) -> None:
    """Reservations up to the limit fit (ten 0.1-cent calls fill 1 cent despite float sums); one more does not."""
    async with opened(path) as store:
        for i in range(10):
            await reserve(store, f"r{i}", 0.1, (TENANT, 1.0))
        with pytest.raises(BudgetExceeded):
            await reserve(store, "one-more", 0.01, (TENANT, 1.0))


@pytest.mark.anyio
async def test_spend_and_reservations_survive_reopen(path: Path) -> None:
    """Closing and reopening the file keeps the day's spend and live reservations: a restart resets nothing."""
    async with opened(path) as store:
        await reserve(store, "r1", 3.0, (TENANT, 10.0))
        await store.budgets.settle("r1", 3.0)
        await reserve(store, "r2", 5.0, (TENANT, 10.0))
    async with opened(path) as store:
        assert await store.budgets.spent(TENANT, DAY) == 3.0
        assert await store.budgets.reserved(TENANT, DAY, NOW) == 5.0
        with pytest.raises(BudgetExceeded):
            await reserve(store, "r3", 3.0, (TENANT, 10.0))
        assert await store.budgets.settle("r2", 1.0) is True


@pytest.mark.anyio
async def test_expired_reservations_stop_counting(path: Path) -> None:
    """A reservation past its expiry holds nothing; a late settle still records the spend; purge removes it."""
    async with opened(path) as store:
        b = store.budgets
        await reserve(store, "dead", 8.0, (TENANT, 10.0), ttl=30.0)
        await reserve(store, "late", 1.0, (TENANT, 10.0), ttl=30.0)
        with pytest.raises(BudgetExceeded):
            await reserve(store, "r", 8.0, (TENANT, 10.0), now=NOW + 29.0)
        assert await b.reserved(TENANT, DAY, NOW + 30.0) == 0.0
        await reserve(store, "r", 8.0, (TENANT, 10.0), now=NOW + 30.0)
        assert await b.settle("late", 1.0) is True
        assert await b.used(TENANT, DAY, NOW + 30.0) == 9.0
        assert await b.purge_reservations(NOW + 31.0) == 1  # "dead"; "r" expires later
        assert await b.settle("dead", 8.0) is False


@pytest.mark.anyio
async def test_a_settlement_past_its_reservation_is_booked_and_closes_its_scopes_for_the_day(path: Path) -> None:
    """Spend above the reservation is booked in full; its scopes then refuse every reservation that day, others not."""
    async with opened(path) as store:
        b = store.budgets
        await reserve(store, "exact", 1.0, (TENANT, 100.0))
        assert await b.settle("exact", 1.0) is True  # at the reservation: the bound held
        assert not await b.closed(TENANT, DAY)
        await reserve(store, "under", 2.0, (CALLER, 100.0), (TENANT, 100.0))
        await reserve(store, "in-flight", 3.0, (TENANT, 100.0))
        assert await b.settle("under", 2.5) is True
        assert (await b.spent(CALLER, DAY), await b.spent(TENANT, DAY)) == (2.5, 3.5)
        assert await b.closed(CALLER, DAY)
        assert await b.closed(TENANT, DAY)
        with pytest.raises(BudgetExceeded) as info:
            await reserve(store, "next", 0.01, (TENANT, 100.0))
        assert (info.value.budget, info.value.limit, info.value.spent) == (TENANT, 100.0, 6.5)
        assert await b.settle("in-flight", 3.0) is True  # what was admitted before still settles
        assert await b.spent(TENANT, DAY) == 6.5
        await reserve(store, "provider", 1.0, (PROVIDER, 100.0))  # a scope the overshoot did not touch
        await b.reserve([(TENANT, 100.0)], day="2023-11-15", amount=1.0, reservation_id="tomorrow", now=NOW,
                        expires_at=NOW + 60)  # fmt: skip
        tokens = BudgetScope.model("cli").key
        await b.reserve([(tokens, 1000)], day=DAY, amount=100, reservation_id="t", now=NOW, expires_at=NOW + 60,
                        unit="tokens")  # fmt: skip
        assert await b.settle("t", 101) is True
        with pytest.raises(BudgetExceeded) as info:
            await b.reserve([(tokens, 1000)], day=DAY, amount=1, reservation_id="t2", now=NOW, expires_at=NOW + 60,
                            unit="tokens")  # fmt: skip
        assert (info.value.budget, info.value.unit, info.value.spent) == (tokens, "tokens", 101.0)
    assert passes_reservation(1.0, 1.0 + 1e-12) is False  # float drift is not an overshoot
    assert passes_reservation(1.0, 1.001) is True


@pytest.mark.anyio
async def test_days_and_units_are_separate_budgets(path: Path) -> None:
    """Another day starts from zero, and token amounts never count against cents of the same scope."""
    tokens = BudgetScope.provider("claude-cli", "tokens").key
    async with opened(path) as store:
        b = store.budgets
        await reserve(store, "r1", 10.0, (TENANT, 10.0))
        await b.reserve(
            [(TENANT, 10.0)], day="2023-11-15", amount=10.0, reservation_id="r2", now=NOW, expires_at=NOW + 9
        )
        await b.reserve(
            [(tokens, 1000)], day=DAY, amount=600, reservation_id="t1", now=NOW, expires_at=NOW + 9, unit="tokens"
        )
        with pytest.raises(BudgetExceeded) as info:
            await b.reserve(
                [(tokens, 1000)], day=DAY, amount=500, reservation_id="t2", now=NOW, expires_at=NOW + 9, unit="tokens"
            )
        assert (info.value.spent, info.value.unit) == (600.0, "tokens")
        assert await b.settle("t1", 420) is True
        assert await b.spent(tokens, DAY, unit="tokens") == 420.0
        assert await b.spent(tokens, DAY) == 0.0
        with pytest.raises(ValueError, match="whole"):
            await b.reserve(
                [(tokens, 1e6)], day=DAY, amount=1.5, reservation_id="t3", now=NOW, expires_at=NOW, unit="tokens"
            )


def call(**fields: Any) -> BudgetedCall:
    """A 1000-token-input, 500-token-output call of tenant acme's svc, with ``fields`` overriding."""
    base: dict[str, Any] = {
        "provider": "openai", "model": "mini", "tenant": "acme", "caller": "svc", "billing": "metered",
        "price": Price(input=2.5, output=10.0), "token_cap_per_day": None, "input_tokens": 1000,
        "max_output_tokens": 500,
    }  # fmt: skip
    return BudgetedCall(**(base | fields))


def test_budget_plan_for_metered_and_subscription_calls() -> None:
    """A metered call reserves cents on caller, tenant and provider (narrowest first); a subscription one, tokens."""
    cfg = BudgetConfig(
        providers={"openai": ProviderBudget(usd_per_day=50.0), "cli": ProviderBudget(tokens_per_day=100_000)},
        tenants={"acme": TenantBudget(usd_per_day=10.0, callers={"svc": CallerBudget(usd_per_day=2.0)})},
    )
    price = Price(input=2.5, output=10.0)
    (plan,) = plan_reservations(cfg, call())
    assert plan.unit == "cents"
    assert plan.amount == pytest.approx(reservation_cents(1000, 500, price)) == pytest.approx(0.75)
    assert plan.limits == ((CALLER, 200.0), (TENANT, 1000.0), (PROVIDER, 5000.0))
    (sub,) = plan_reservations(
        cfg, call(provider="cli", caller="other", billing="subscription", price=None, token_cap_per_day=None)
    )
    assert (sub.unit, sub.amount, sub.limits) == ("tokens", 1500.0, (("provider:cli#tokens", 100_000.0),))
    assert settle_amount("tokens", Usage(10, 5, 3, 2), None) == 20.0
    assert settle_amount("cents", Usage(1000, 500), price) == pytest.approx(0.75)
    assert day_bucket(NOW) == DAY
    assert day_bucket(1_700_006_400.0) == "2023-11-15"  # 00:00 UTC the next day


def test_a_models_token_cap_is_a_token_budget_whatever_its_billing() -> None:
    """token_cap_per_day reserves input bound + max output tokens on model:<name>#tokens, beside any other plan."""
    cfg = BudgetConfig(providers={"cli": ProviderBudget(tokens_per_day=100_000)})
    (sub,) = plan_reservations(
        cfg, call(provider="cli", model="claude-cli", billing="subscription", price=None, token_cap_per_day=5000)
    )
    # One plan, model narrowest: both token budgets are held at once or neither.
    limits = (("model:claude-cli#tokens", 5000.0), ("provider:cli#tokens", 100_000.0))
    assert sub == BudgetPlan("tokens", 1500.0, limits)
    assert BudgetScope.model("claude-cli").key == "model:claude-cli#tokens"
    tenant_only = BudgetConfig(tenants={"acme": TenantBudget(usd_per_day=1.0)})
    cents, tokens = plan_reservations(tenant_only, call(token_cap_per_day=2000))
    assert (cents.unit, cents.limits) == ("cents", ((TENANT, 100.0),))
    assert tokens == BudgetPlan("tokens", 1500.0, (("model:mini#tokens", 2000.0),))
    assert plan_reservations(BudgetConfig(), call()) == ()  # no budget applies: nothing to reserve
    assert plan_reservations(tenant_only, call(tenant="globex")) == ()


def test_a_cache_marking_call_reserves_input_at_the_cache_write_price() -> None:
    """With may_write_cache the input is reserved at the dearer cache-write price, so its settlement stays within."""
    cfg = BudgetConfig(tenants={"acme": TenantBudget(usd_per_day=1.0)})
    price = Price(input=3.0, output=15.0, cache_write=3.75)
    (plain,) = plan_reservations(cfg, call(price=price))
    (marked,) = plan_reservations(cfg, call(price=price, may_write_cache=True))
    written = settle_amount("cents", Usage(0, 500, 0, 1000), price)
    assert plain.amount < written <= marked.amount


def test_budget_config_rejects_bad_amounts() -> None:
    """A negative or infinite budget, or a non-positive reservation ttl, is refused with the field named."""
    with pytest.raises(ValueError, match="usd_per_day"):
        TenantBudget(usd_per_day=-1.0)
    with pytest.raises(ValueError, match="usd_per_day"):
        ProviderBudget(usd_per_day=float("inf"))
    with pytest.raises(ValueError, match="reservation_ttl_s"):
        BudgetConfig(reservation_ttl_s=0.0)


# -- leases ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lease_limit_release_and_reacquire(path: Path) -> None:
    """At most ``limit`` leases per scope; a release frees a slot; re-acquiring one's own lease takes no second slot."""
    async with opened(path) as store:
        leases = store.leases
        assert [await leases.acquire("p", 2, f"l{i}", NOW, 30.0) for i in range(3)] == [True, True, False]
        assert await leases.acquire("other", 2, "o1", NOW, 30.0) is True  # scopes are independent
        assert await leases.acquire("p", 2, "l0", NOW, 30.0) is True
        assert await leases.holders("p", NOW) == 2
        assert await leases.release("l0") is True
        assert await leases.release("l0") is False
        assert await leases.acquire("p", 2, "l2", NOW, 30.0) is True


@pytest.mark.anyio
async def test_leases_expire_unless_renewed(path: Path) -> None:
    """A lease not renewed stops holding its slot at its expiry; a renewed one keeps it; a lapsed one cannot renew."""
    async with opened(path) as store:
        leases = store.leases
        assert await leases.acquire("p", 2, "kept", NOW, 10.0)
        assert await leases.acquire("p", 2, "lapsed", NOW, 10.0)
        assert await leases.renew("kept", NOW + 9.0, 10.0) is True
        assert await leases.holders("p", NOW + 10.0) == 1
        assert await leases.renew("lapsed", NOW + 10.0, 10.0) is False
        assert await leases.acquire("p", 2, "new", NOW + 10.0, 10.0) is True
        assert await leases.acquire("p", 2, "extra", NOW + 18.0, 10.0) is False


# -- the file --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_shares_a_file_with_the_ledger(path: Path) -> None:
    """The state tables and the ledger's live in one file, each with its own version, in either opening order."""
    async with SqliteLedgerStore(path) as ledger, opened(path) as store:
        await store.cache.put("k", b"v", NOW + 5)
        assert await ledger.count_requests() == 0
    async with opened(path) as store, SqliteLedgerStore(path) as ledger:
        assert await store.cache.get("k", NOW) == b"v"
        assert await ledger.count_requests() == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT MAX(version) FROM state_schema_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.anyio
async def test_refuses_a_newer_schema_and_memory_files(path: Path) -> None:
    """A file from a newer interlock, an in-memory path and a closed store are refused with StateStoreError."""
    async with opened(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO state_schema_version VALUES (?, 'future')", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateStoreError, match="newer"):
        await SqliteStateStore(path).open()
    with pytest.raises(StateStoreError, match="in-memory"):
        await SqliteStateStore(":memory:").open()
    with pytest.raises(StateStoreError, match="not open"):
        await SqliteStateStore(path).cache.get("k", NOW)


# -- several processes -----------------------------------------------------------------------

_PRELUDE = """
import json, os, sys
import anyio, anyio.lowlevel
from interlock._errors import BudgetExceeded
from interlock.adapters.stores._state_store import SqliteStateStore

path, me, args = sys.argv[1], int(sys.argv[2]), [float(a) for a in sys.argv[3:]]
NOW, DAY = 1_700_000_000.0, "2023-11-14"

def ready():
    print("ready", flush=True)
    assert sys.stdin.readline() == "go\\n"
"""

_RESERVER = """
async def main():
    tenant_limit, caller_limit, n = args
    stats = {"ok": 0, "refused": 0, "settled": 0, "max_used": 0.0}
    async with SqliteStateStore(path) as store:
        ready()

        async def one(i):
            scopes = [(f"caller:acme/p{me}", caller_limit), ("tenant:acme", tenant_limit)]
            rid = f"p{me}-{i}"
            try:
                await store.budgets.reserve(
                    scopes, day=DAY, amount=1.0, reservation_id=rid, now=NOW, expires_at=NOW + 3600
                )
            except BudgetExceeded:
                stats["refused"] += 1
                return
            stats["ok"] += 1
            used = await store.budgets.used("tenant:acme", DAY, NOW)
            stats["max_used"] = max(stats["max_used"], used)
            if i % 2 == 0:
                settled = await store.budgets.settle(rid, 1.0)
                stats["settled"] += int(settled)

        async with anyio.create_task_group() as tg:
            for i in range(int(n)):
                tg.start_soon(one, i)
    print(json.dumps(stats), flush=True)

anyio.run(main)
"""

_LEASER = """
async def main():
    limit, workers, rounds = (int(a) for a in args)
    stats = {"acquired": 0, "refused": 0, "max_holders": 0}
    async with SqliteStateStore(path) as store:
        ready()

        async def worker(w):
            for r in range(rounds):
                lease = f"p{me}-w{w}-r{r}"
                if not await store.leases.acquire("provider:openai", limit, lease, NOW, 60.0):
                    stats["refused"] += 1
                    await anyio.lowlevel.checkpoint()
                    continue
                stats["acquired"] += 1
                holders = await store.leases.holders("provider:openai", NOW)
                stats["max_holders"] = max(stats["max_holders"], holders)
                await anyio.lowlevel.checkpoint()
                assert await store.leases.release(lease)

        async with anyio.create_task_group() as tg:
            for w in range(workers):
                tg.start_soon(worker, w)
    print(json.dumps(stats), flush=True)

anyio.run(main)
"""

_HOLDER = """
async def main():
    (ttl,) = args
    async with SqliteStateStore(path) as store:
        for i in range(3):
            assert await store.leases.acquire("provider:local", 3, f"dead-{i}", NOW, ttl)
        await store.budgets.reserve(
            [("tenant:acme", 10.0)], day=DAY, amount=10.0, reservation_id="dead", now=NOW, expires_at=NOW + ttl
        )
        print("held", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


@contextlib.contextmanager
def children(script: str, path: Path, argsets: list[list[float]]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start one Python process per argument set running ``script``; kill any still running at exit."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _PRELUDE + script, str(path), str(me), *map(str, args)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            for me, args in enumerate(argsets)
        ]
        try:
            yield procs
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()


def run_together(script: str, path: Path, argsets: list[list[float]]) -> list[dict[str, Any]]:
    """Run the processes, release them at once when all are ready, and collect each one's JSON stats."""
    results: list[dict[str, Any]] = []
    with children(script, path, argsets) as procs:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", line + proc.communicate()[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=50)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    return results


async def prepare(path: Path) -> None:
    """Create the schema once, so the children race on data, not on migrations."""
    async with opened(path):
        pass


@pytest.mark.anyio
async def test_processes_never_overspend_a_shared_budget(path: Path) -> None:
    """4 processes x 50 concurrent reservations: exactly the limit's worth succeed, and no one ever sees it exceeded."""
    await prepare(path)
    tenant_limit, caller_limit, per_process = 120.0, 40.0, 50
    argsets = [[tenant_limit, caller_limit, per_process]] * 4
    stats = await anyio.to_thread.run_sync(run_together, _RESERVER, path, argsets)
    assert sum(s["ok"] for s in stats) == tenant_limit
    assert all(s["ok"] <= caller_limit for s in stats)
    assert all(s["ok"] + s["refused"] == per_process for s in stats)
    assert max(s["max_used"] for s in stats) <= tenant_limit
    async with opened(path) as store:
        assert await store.budgets.used(TENANT, DAY, NOW) == tenant_limit
        assert await store.budgets.spent(TENANT, DAY) == sum(s["settled"] for s in stats)
        for me, s in enumerate(stats):
            assert await store.budgets.used(f"caller:acme/p{me}", DAY, NOW) == s["ok"]


@pytest.mark.anyio
async def test_processes_never_exceed_a_shared_lease_limit(path: Path) -> None:
    """4 processes x 10 tasks cycling leases on one scope of limit 3 never see more than 3 holders in the store."""
    await prepare(path)
    stats = await anyio.to_thread.run_sync(run_together, _LEASER, path, [[3, 10, 20]] * 4)
    assert max(s["max_holders"] for s in stats) <= 3
    assert sum(s["acquired"] for s in stats) > 0
    assert sum(s["refused"] for s in stats) > 0  # the limit was contended, so the bound means something
    assert all(s["acquired"] + s["refused"] == 10 * 20 for s in stats)
    async with opened(path) as store:
        assert await store.leases.holders("provider:openai", NOW) == 0


def _hold_then_die(path: Path, ttl: float) -> None:
    """Start a process that takes every slot and a whole budget, wait until it holds them, then SIGKILL it."""
    with children(_HOLDER, path, [[ttl]]) as (proc,):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "held\n", line + proc.communicate()[1]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.anyio
async def test_a_killed_processs_slots_free_at_once_and_its_reservation_at_expiry(path: Path) -> None:
    """A process SIGKILLed holding every slot and a whole budget frees the slots at once, the money only at expiry."""
    await prepare(path)
    ttl = 30.0
    await anyio.to_thread.run_sync(_hold_then_die, path, ttl)
    async with opened(path) as store:
        assert await store.leases.holders("provider:local", NOW) == 3  # its leases are still in the file...
        taken = [await store.leases.acquire("provider:local", 3, f"mine-{i}", NOW, ttl) for i in range(4)]
        assert taken == [True, True, True, False]  # ...and free to a live process, well before their expiry
        with pytest.raises(BudgetExceeded):  # the provider may have billed the call it was making
            await reserve(store, "mine", 1.0, (TENANT, 10.0), now=NOW + ttl - 1)
        await reserve(store, "mine", 10.0, (TENANT, 10.0), now=NOW + ttl)

"""Random runs of budget and lease operations give the same answers on SQLite and on a real redis-server.

Hypothesis draws sequences of reserve / settle / release / purge and acquire / renew / release on
a few scopes with tight limits, two units and a clock that moves; each step runs on both stores
and must get the same outcome (granted, or refused naming the same budget and spend; True or
False), and after it every scope must read the same spent, used, reserved and closed figures.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer

from interlock._errors import BudgetExceeded
from interlock.adapters.stores._redis_state import RedisStateStore
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import SqliteStateStore, StateStore

NOW = 1_700_000_000.0
DAY = "2023-11-14"
LIMITS = {"tenant:acme": 5.0, "caller:acme/svc": 3.0, "provider:株式会社🙂": 8.0}
SCOPES = tuple(LIMITS)
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module; each example keeps to a key prefix of its own."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


ids = st.integers(min_value=0, max_value=5).map(lambda i: f"r{i}")
reserve = st.tuples(
    st.just("reserve"),
    ids,
    st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3, unique=True),
    st.sampled_from(["cents", "tokens"]),
    st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 3.0]),
    st.sampled_from([5.0, 30.0]),
)
settle = st.tuples(st.just("settle"), ids, st.sampled_from([0.0, 0.1, 1.0, 2.0, 3.5]))
release = st.tuples(st.just("release"), ids)
purge = st.tuples(st.just("purge"), st.sampled_from([0.0, 10.0]))
lease_ids = st.integers(min_value=0, max_value=3).map(lambda i: f"l{i}")
acquire = st.tuples(st.just("acquire"), lease_ids, st.sampled_from(["all", "provider:p"]), st.sampled_from([1, 2]))
renew = st.tuples(st.just("renew"), lease_ids)
let_go = st.tuples(st.just("let_go"), lease_ids)
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 1.0, 6.0]), st.one_of(reserve, settle, release, purge, acquire, renew, let_go)
    ),
    min_size=1,
    max_size=25,
)


async def apply(store: StateStore, now: float, op: tuple[Any, ...]) -> object:
    """Run one step; what it answered (a refusal as its budget, limit, spend and unit)."""
    b, kind = store.budgets, op[0]
    try:
        if kind == "reserve":
            _, rid, scopes, unit, amount, ttl = op
            limits = [(scope, LIMITS[scope]) for scope in scopes]
            granted = await b.reserve(
                limits, day=DAY, amount=amount, reservation_id=rid, now=now, expires_at=now + ttl, unit=unit
            )
            return ("granted", granted.amount, granted.scopes)
        if kind == "settle":
            return await b.settle(op[1], op[2])
        if kind == "release":
            return await b.release(op[1])
        if kind == "purge":
            return await b.purge_reservations(now - op[1])
        if kind == "acquire":
            return await store.leases.acquire(op[2], op[3], op[1], now, 5.0)
        if kind == "renew":
            return await store.leases.renew(op[1], now, 5.0)
        return await store.leases.release(op[1])
    except BudgetExceeded as exc:
        return ("refused", exc.budget, exc.limit, round(exc.spent, 9), exc.unit)
    except ValueError as exc:
        return ("invalid", str(exc).split(",")[0])
    except StateStoreError:
        return ("error",)  # a reservation id already held: each store refuses it as its own error


async def figures(store: StateStore, now: float) -> list[object]:
    """Every scope's spent, used, reserved and closed in both units, and the lease counts, at ``now``."""
    out: list[object] = []
    for scope in SCOPES:
        for unit in ("cents", "tokens"):
            b = store.budgets
            spent = await b.spent(scope, DAY, unit=unit)
            used = await b.used(scope, DAY, now, unit=unit)
            held = await b.reserved(scope, DAY, now, unit=unit)
            out.append((scope, unit, round(spent, 9), round(used, 9), round(held, 9)))
        out.append((scope, await store.budgets.closed(scope, DAY)))
    out += [await store.leases.holders(scope, now) for scope in ("all", "provider:p")]
    return out


async def run_both(url: str, plan: list[tuple[float, tuple[Any, ...]]]) -> None:
    with tempfile.TemporaryDirectory(prefix="interlock-eq-") as scratch:
        async with (
            SqliteStateStore(Path(scratch) / "state.sqlite") as sqlite,
            RedisStateStore(url, key_prefix=f"eq{next(_prefixes)}") as redis,
        ):
            now = NOW
            for number, (step, op) in enumerate(plan):
                now += step
                answers = [await apply(store, now, op) for store in (sqlite, redis)]
                assert answers[0] == answers[1], (number, op)
                seen = [await figures(store, now) for store in (sqlite, redis)]
                assert seen[0] == seen[1], (number, op)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps)
def test_sqlite_and_redis_agree_on_every_step(server: RedisServer, plan: list[tuple[float, tuple[Any, ...]]]) -> None:
    """Any sequence of budget and lease steps answers alike, and leaves alike, on both stores."""
    anyio.run(run_both, server.url, plan)

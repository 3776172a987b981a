"""One contract for every state store: the same cases run against a SQLite file and a real redis-server.

Cache, budgets and leases are held to one meaning whatever the store: the bound rules of the
budgets (room = settled spend + unexpired reservations + amount within the limit on every scope;
a settlement above its reservation is booked and closes its scopes for the day), leases with a
TTL, the cache's expiry by the caller's clock. A few cases at the end hold what only the Redis
store has: the cache's size bound, key prefixes that keep deployments apart, and its errors.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, free_port

from interlock._clock import FakeClock
from interlock._errors import BudgetExceeded
from interlock._types import ChatRequest, Message, Usage
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.request._attempt import Attempt
from interlock.adapters.stores._redis_state import RedisStateStore, StateStoreUnavailable
from interlock.adapters.stores._state_open import open_state_store
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import SqliteStateStore, StateStore
from interlock.policies._budget import BudgetConfig, BudgetScope, TenantBudget, day_bucket
from interlock.policies._cache_key import cache_key
from interlock.policies._config import ModelConfig, StateConfig
from interlock.policies._pricing import Price, cost_cents, estimate_cents
from interlock.policies._routing import Candidate
from interlock.policies._store_url import parse_store_url
from interlock.policies._tokens import input_token_bound

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
DAY = "2023-11-14"
TENANT = BudgetScope.tenant("acme").key
CALLER = BudgetScope.caller("acme", "svc").key
PROVIDER = BudgetScope.provider("openai").key
EMOJI_TENANT = BudgetScope.tenant("株式会社🙂").key
_prefixes = itertools.count()

Opener = Callable[[], contextlib.AbstractAsyncContextManager[StateStore]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module; each test keeps to a key prefix of its own."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture(params=["sqlite", "redis"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store under test afresh each time it is called (the same file, or the same server and prefix)."""
    if request.param == "sqlite":
        return lambda: SqliteStateStore(tmp_path / "state.sqlite")
    server: RedisServer = request.getfixturevalue("server")
    prefix = f"t{next(_prefixes)}"
    return lambda: RedisStateStore(server.url, key_prefix=prefix, cache_max_entries=1000)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[StateStore]:
    """The store under test, open for the test."""
    async with opener() as opened:
        yield opened


async def reserve(
    store: StateStore, rid: str, amount: float, *scopes: tuple[str, float], now: float = NOW, ttl: float = 600.0
) -> None:
    """Reserve ``amount`` cents for DAY on ``scopes``, expiring ``ttl`` seconds after ``now``."""
    await store.budgets.reserve(list(scopes), day=DAY, amount=amount, reservation_id=rid, now=now, expires_at=now + ttl)


# -- cache -----------------------------------------------------------------------------------


async def test_cache_hit_until_expiry_then_miss(store: StateStore) -> None:
    """A stored value is a hit before its expiry, a miss from then on, and purge removes only expired entries."""
    await store.cache.put("k1", b"answer \xf0\x9f\x99\x82", NOW + 10)
    await store.cache.put("k2", b"later", NOW + 100)
    assert await store.cache.get("k1", NOW + 9.9) == b"answer \xf0\x9f\x99\x82"
    assert await store.cache.get("k1", NOW + 10) is None
    assert await store.cache.get("absent", NOW) is None
    assert await store.cache.purge(NOW + 10) == 1
    assert await store.cache.get("k1", NOW) is None  # purged, not only expired
    assert await store.cache.get("k2", NOW + 10) == b"later"


async def test_cache_put_replaces_and_keeps_tenants_apart(store: StateStore) -> None:
    """A second put replaces value and expiry; one request cached for a tenant is a miss for another."""
    await store.cache.put("k", b"old", NOW + 10)
    await store.cache.put("k", b"new", NOW + 20)
    assert await store.cache.get("k", NOW + 15) == b"new"
    request = ChatRequest(messages=(Message.text("user", "你好🙂"),))
    await store.cache.put(cache_key(request, "chat", "acme"), b"acme's", NOW + 60)
    assert await store.cache.get(cache_key(request, "chat", "globex"), NOW) is None
    assert await store.cache.get(cache_key(request, "chat", "acme"), NOW) == b"acme's"


# -- budgets ---------------------------------------------------------------------------------


async def test_reserve_settle_release_arithmetic(store: StateStore) -> None:
    """A reservation holds its amount on each scope; settle swaps it for the actual spend; release drops it."""
    b = store.budgets
    await reserve(store, "r1", 4.0, (TENANT, 100.0), (PROVIDER, 100.0))
    assert (await b.reserved(TENANT, DAY, NOW), await b.reserved(PROVIDER, DAY, NOW)) == (4.0, 4.0)
    assert await b.settle("r1", 2.5) is True
    assert (await b.spent(TENANT, DAY), await b.reserved(TENANT, DAY, NOW)) == (2.5, 0.0)
    assert await b.spent(PROVIDER, DAY) == 2.5
    assert await b.settle("r1", 2.5) is False  # settling twice never double counts
    await reserve(store, "r2", 7.0, (TENANT, 100.0))
    assert await b.used(TENANT, DAY, NOW) == 9.5
    assert await b.release("r2") is True
    assert await b.release("r2") is False
    assert await b.used(TENANT, DAY, NOW) == 2.5
    assert not await b.closed(TENANT, DAY)


async def test_budget_exceeded_names_first_full_scope_and_holds_nothing(store: StateStore) -> None:
    """A refusal names the first scope without room, its limit and its spend, and reserves on no scope."""
    await reserve(store, "r1", 4.0, (TENANT, 5.0))
    with pytest.raises(BudgetExceeded) as info:
        await reserve(store, "r2", 2.0, (CALLER, 10.0), (TENANT, 5.0), (PROVIDER, 1.0))
    assert (info.value.budget, info.value.limit, info.value.spent, info.value.unit) == (TENANT, 5.0, 4.0, "cents")
    assert await store.budgets.used(CALLER, DAY, NOW) == 0.0
    assert await store.budgets.used(PROVIDER, DAY, NOW) == 0.0
    assert await store.budgets.release("r2") is False  # nothing of the refused one was kept


async def test_a_budget_fills_exactly_to_its_limit(store: StateStore) -> None:
    """Ten 0.1-cent reservations fill 1 cent despite float sums; one more does not fit."""
    for i in range(10):
        await reserve(store, f"r{i}", 0.1, (EMOJI_TENANT, 1.0))
    with pytest.raises(BudgetExceeded) as info:
        await reserve(store, "one-more", 0.01, (EMOJI_TENANT, 1.0))
    assert info.value.budget == EMOJI_TENANT
    assert info.value.spent == pytest.approx(1.0)


async def test_spend_and_reservations_survive_reopen(opener: Opener) -> None:
    """Closing and reopening keeps the day's spend and live reservations: a restart of the gateway resets nothing."""
    async with opener() as store:
        await reserve(store, "r1", 3.0, (TENANT, 10.0))
        await store.budgets.settle("r1", 3.0)
        await reserve(store, "r2", 5.0, (TENANT, 10.0))
    async with opener() as store:
        assert await store.budgets.spent(TENANT, DAY) == 3.0
        assert await store.budgets.reserved(TENANT, DAY, NOW) == 5.0
        with pytest.raises(BudgetExceeded):
            await reserve(store, "r3", 3.0, (TENANT, 10.0))
        assert await store.budgets.settle("r2", 1.0) is True


async def test_expired_reservations_stop_counting_yet_settle_until_purged(store: StateStore) -> None:
    """A reservation past its expiry holds nothing; a late settle still books; purge removes it for good."""
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


async def test_a_settlement_past_its_reservation_is_booked_and_closes_its_scopes(store: StateStore) -> None:
    """Spend above the reservation is booked in full; its scopes refuse every reservation that day, others not."""
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


async def test_days_and_units_are_separate_budgets(store: StateStore) -> None:
    """Another day starts from zero; tokens never count against cents of the same scope; tokens are whole."""
    tokens = BudgetScope.provider("claude-cli", "tokens").key
    b = store.budgets
    await reserve(store, "r1", 10.0, (TENANT, 10.0))
    await b.reserve([(TENANT, 10.0)], day="2023-11-15", amount=10.0, reservation_id="r2", now=NOW, expires_at=NOW + 9)
    await b.reserve([(tokens, 1000)], day=DAY, amount=600, reservation_id="t1", now=NOW, expires_at=NOW + 9,
                    unit="tokens")  # fmt: skip
    with pytest.raises(BudgetExceeded) as info:
        await b.reserve([(tokens, 1000)], day=DAY, amount=500, reservation_id="t2", now=NOW, expires_at=NOW + 9,
                        unit="tokens")  # fmt: skip
    assert (info.value.spent, info.value.unit) == (600.0, "tokens")
    assert await b.settle("t1", 101) is True
    assert await b.spent(tokens, DAY, unit="tokens") == 101.0
    assert await b.spent(tokens, DAY) == 0.0
    assert await b.used(tokens, DAY, NOW, unit="tokens") == 101.0
    with pytest.raises(ValueError, match="whole"):
        await b.reserve([(tokens, 1e6)], day=DAY, amount=1.5, reservation_id="t3", now=NOW, expires_at=NOW,
                        unit="tokens")  # fmt: skip


async def test_bad_reservations_are_refused_before_anything_is_held(store: StateStore) -> None:
    """A scope named twice or a negative amount is a ValueError, and a bad settlement books nothing."""
    with pytest.raises(ValueError, match="once"):
        await reserve(store, "twice", 1.0, (TENANT, 10.0), (TENANT, 10.0))
    with pytest.raises(ValueError, match="finite"):
        await reserve(store, "negative", -1.0, (TENANT, 10.0))
    await reserve(store, "r", 1.0, (TENANT, 10.0))
    with pytest.raises(ValueError, match="finite"):
        await store.budgets.settle("r", float("nan"))
    assert await store.budgets.spent(TENANT, DAY) == 0.0
    assert await store.budgets.reserved(TENANT, DAY, NOW) == 1.0


# -- the budget rail on each store -----------------------------------------------------------

PRICE = Price(input=8.0, output=8.0)
CLOCK = FakeClock()
REQUEST = ChatRequest(messages=(Message.text("user", "请总结🙂" * 10),), tenant="acme", max_tokens=50)
MODEL = ModelConfig(
    provider="a", id="mini-2024-01-01", model_class="fast", context_window=10_000, max_output_tokens=500, price=PRICE
)


def attempt() -> Attempt:
    return Attempt(Candidate(name="mini", model=MODEL, provider="a", position=0), 1, 1, 0.0, hedge=False)


async def test_the_budget_rail_reserves_the_bound_and_a_broken_bound_closes_the_tenant(store: StateStore) -> None:
    """The rail reserves input bound + max tokens; a settlement past it is booked and the tenant then refuses."""
    rail = BudgetRail(store.budgets, BudgetConfig(tenants={"acme": TenantBudget(usd_per_day=1.0)}), CLOCK)
    day, wall = day_bucket(CLOCK.wall()), CLOCK.wall()
    first = attempt()
    await rail.enter(REQUEST, first, 1)
    expected = estimate_cents(input_token_bound(REQUEST), 50, PRICE)
    assert await store.budgets.reserved(TENANT, day, wall) == pytest.approx(expected)
    first.usage = Usage(input_token_bound(REQUEST) * 2, 50)
    await rail.leave(first)
    assert await store.budgets.spent(TENANT, day) == pytest.approx(cost_cents(first.usage, PRICE))
    with pytest.raises(BudgetExceeded) as info:
        await rail.enter(REQUEST, attempt(), 0)
    assert (info.value.budget, info.value.unit) == (TENANT, "cents")
    assert await store.budgets.reserved(TENANT, day, wall) == 0.0


# -- leases ----------------------------------------------------------------------------------


async def test_leases_hold_a_limit_renew_and_release(store: StateStore) -> None:
    """At most ``limit`` unexpired leases per scope; re-acquiring renews; renew fails once expired; release frees."""
    leases = store.leases
    assert await leases.acquire("provider:p", 2, "a", NOW, 30.0)
    assert await leases.acquire("provider:p", 2, "b", NOW, 30.0)
    assert not await leases.acquire("provider:p", 2, "c", NOW, 30.0)
    assert await leases.acquire("provider:p", 2, "a", NOW + 1, 30.0)  # its own slot, renewed, not a third
    assert await leases.acquire("all", 1, "c", NOW, 30.0)  # another scope has its own count
    assert await leases.holders("provider:p", NOW) == 2
    assert await leases.renew("b", NOW + 20, 30.0)  # b now runs to NOW + 50
    assert not await leases.renew("a", NOW + 31, 30.0)  # a expired at NOW + 31: its slot is lost
    assert await leases.holders("provider:p", NOW + 40) == 1
    assert await leases.acquire("provider:p", 2, "d", NOW + 40, 30.0)  # a's slot is free again
    assert await leases.release("b") is True
    assert await leases.release("b") is False
    assert await leases.release("never") is False
    assert not await leases.renew("never", NOW, 30.0)
    assert await leases.holders("provider:p", NOW + 40) == 1


async def test_a_holders_leases_free_after_their_ttl(store: StateStore) -> None:
    """Leases nobody renews stop counting at their expiry, and their slots go to the next taker."""
    for i in range(3):
        assert await store.leases.acquire("provider:local", 3, f"gone-{i}", NOW, 5.0)
    assert not await store.leases.acquire("provider:local", 3, "mine", NOW + 4.9, 5.0)
    assert await store.leases.acquire("provider:local", 3, "mine", NOW + 5.0, 5.0)
    assert await store.leases.holders("provider:local", NOW + 5.0) == 1


# -- what only the Redis store has -----------------------------------------------------------


async def test_the_redis_cache_keeps_at_most_its_bound_soonest_expiries_going_first(server: RedisServer) -> None:
    """Past cache_max_entries the entries that expire first are evicted, the rest kept whole."""
    async with RedisStateStore(server.url, key_prefix="bound", cache_max_entries=3) as store:
        for i, ttl in enumerate((50, 10, 40, 30, 20)):
            await store.cache.put(f"k{i}", f"v{i}".encode(), NOW + ttl)
        kept = {f"k{i}": await store.cache.get(f"k{i}", NOW) for i in range(5)}
        assert kept == {"k0": b"v0", "k1": None, "k2": b"v2", "k3": b"v3", "k4": None}
        index = await store.client().zcard("bound:c:index")
        keys = sorted(await store.client().keys("bound:c:k*"))
        assert (index, keys) == (3, [b"bound:c:k0", b"bound:c:k2", b"bound:c:k3"])


async def test_key_prefixes_keep_deployments_apart_on_one_server(server: RedisServer) -> None:
    """Two prefixes on one server share nothing: not a cached answer, a budget or a slot."""
    async with (
        RedisStateStore(server.url, key_prefix="blue") as blue,
        RedisStateStore(server.url, key_prefix="green") as green,
    ):
        await blue.cache.put("k", b"blue's", NOW + 60)
        await reserve(blue, "r", 10.0, (TENANT, 10.0))
        assert await blue.leases.acquire("all", 1, "x", NOW, 30.0)
        assert await green.cache.get("k", NOW) is None
        await reserve(green, "r", 10.0, (TENANT, 10.0))  # the same id and scope: green's own
        assert await green.leases.acquire("all", 1, "y", NOW, 30.0)
        assert all(key.startswith(b"blue:") for key in await blue.client().keys("blue*"))


async def test_open_state_store_opens_redis_with_the_state_settings(server: RedisServer) -> None:
    """open_state_store opens a Redis URL with [state]'s prefix and bound, and closes its client after."""
    where = parse_store_url(server.url, key="state.url", allowed=("sqlite", "redis"))
    async with open_state_store(where, StateConfig(key_prefix="opened", cache_max_entries=1)) as store:
        assert isinstance(store, RedisStateStore)
        await store.cache.put("a", b"1", NOW + 60)
        await store.cache.put("b", b"2", NOW + 61)
        assert (await store.cache.get("a", NOW), await store.cache.get("b", NOW)) == (None, b"2")
    with pytest.raises(StateStoreError, match="not open"):
        store.client()


async def test_redis_errors_name_the_address_never_its_password(tmp_path: Path) -> None:
    """Refused, wrong-password and lost-server errors name the address with *** for the password, never the secret."""
    secret = "hunter2-secret"
    with pytest.raises(StateStoreUnavailable) as down:
        async with RedisStateStore(f"redis://:{secret}@127.0.0.1:{free_port()}/0"):
            pass
    assert secret not in str(down.value)
    assert "redis://:***@127.0.0.1" in str(down.value)
    guarded = RedisServer(tmp_path / "auth", "--requirepass", secret)
    with guarded:
        with pytest.raises(StateStoreError) as refused:
            async with RedisStateStore(f"redis://:wrong-{secret}@127.0.0.1:{guarded.port}/0"):
                pass
        assert not isinstance(refused.value, StateStoreUnavailable)  # a wrong secret is not an outage
        assert secret not in str(refused.value)
        assert "***" in str(refused.value)
        right = f"redis://:{secret}@127.0.0.1:{guarded.port}/0"
        async with RedisStateStore(right) as store:
            await reserve(store, "r", 1.0, (TENANT, 10.0))
            assert secret not in repr(store)
            guarded.stop()
            with pytest.raises(StateStoreUnavailable) as lost:
                await store.budgets.settle("r", 1.0)
    assert secret not in str(lost.value)
    assert "settle failed" in str(lost.value)

"""The budget rail on a real state file: the reservation is a bound, leaving settles what the attempt holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from interlock._clock import FakeClock
from interlock._errors import BudgetExceeded
from interlock._types import ChatRequest, Message, Usage
from interlock.actors.rails._budget import BudgetHold, BudgetRail
from interlock.actors.request._attempt import Attempt
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.policies._budget import BudgetConfig, ProviderBudget, TenantBudget, day_bucket
from interlock.policies._config import ModelConfig, parse_config
from interlock.policies._pricing import Price, cost_cents, estimate_cents
from interlock.policies._routing import Candidate
from interlock.policies._tokens import estimate_output_tokens, input_token_bound

pytestmark = pytest.mark.anyio

PRICE = Price(input=8.0, output=8.0)
TENANT = "tenant:acme"
CLOCK = FakeClock()
DAY = day_bucket(CLOCK.wall())
REQUEST = ChatRequest(messages=(Message.text("user", "请总结🙂" * 10),), tenant="acme", max_tokens=50)


def attempt(model: ModelConfig, name: str = "mini") -> Attempt:
    """A fresh attempt at ``model``."""
    return Attempt(Candidate(name=name, model=model, provider="a", position=0), 1, 1, 0.0, hedge=False)


def metered(cap: int | None = None) -> ModelConfig:
    return ModelConfig(
        provider="a", id="mini-2024-01-01", model_class="fast", context_window=10_000, max_output_tokens=500,
        price=PRICE, token_cap_per_day=cap,
    )  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    """A state store on a fresh file."""
    async with SqliteStateStore(tmp_path / "state.sqlite") as s:
        yield s


def rail(store: SqliteStateStore, cents: float = 100.0) -> BudgetRail:
    return BudgetRail(store.budgets, BudgetConfig(tenants={"acme": TenantBudget(usd_per_day=cents / 100)}), CLOCK)


async def test_the_reservation_is_the_input_bound_not_the_routing_estimate(store: SqliteStateStore) -> None:
    """Entering reserves input_token_bound + max_tokens at the price, whatever input estimate the run passes."""
    budget, a = rail(store), attempt(metered())
    await budget.enter(REQUEST, a, 1)
    expected = estimate_cents(input_token_bound(REQUEST), 50, PRICE)
    assert await store.budgets.reserved(TENANT, DAY, CLOCK.wall()) == pytest.approx(expected)
    assert isinstance(a.holds["budget"], BudgetHold)


async def test_leaving_settles_an_estimated_usage_and_releases_an_empty_one(store: SqliteStateStore) -> None:
    """An attempt whose usage the run estimated (a stream broken after text) is billed it; one with none, nothing."""
    budget = rail(store)
    broken, never = attempt(metered()), attempt(metered())
    await budget.enter(REQUEST, broken, 0)
    await budget.enter(REQUEST, never, 0)
    broken.usage = Usage(input_token_bound(REQUEST), estimate_output_tokens("好好好", 50))
    await budget.leave(broken)
    await budget.leave(never)
    await budget.leave(never)  # leaving twice is a no-op: the hold is gone
    assert broken.usage.output_tokens == 9  # three CJK characters, three bytes each
    assert await store.budgets.spent(TENANT, DAY) == pytest.approx(cost_cents(broken.usage, PRICE))
    assert await store.budgets.reserved(TENANT, DAY, CLOCK.wall()) == 0.0
    assert broken.holds == never.holds == {}


async def test_a_settlement_past_its_bound_closes_the_tenant_for_the_day(store: SqliteStateStore) -> None:
    """A provider that bills past the reservation is booked in full, and the tenant then refuses every call."""
    budget, a = rail(store), attempt(metered())
    await budget.enter(REQUEST, a, 0)
    a.usage = Usage(input_token_bound(REQUEST) * 2, 50)
    await budget.leave(a)
    spent = await store.budgets.spent(TENANT, DAY)
    assert spent == pytest.approx(cost_cents(a.usage, PRICE))
    assert spent < 100.0  # far from the limit: closed for the broken bound, not for want of room
    with pytest.raises(BudgetExceeded) as info:
        await budget.enter(REQUEST, attempt(metered()), 0)
    assert (info.value.budget, info.value.unit) == (TENANT, "cents")


async def test_a_subscription_models_daily_token_cap_is_enforced(store: SqliteStateStore) -> None:
    """A subscription model reserves input bound + max output tokens on its cap, settles real tokens, then refuses."""
    model = ModelConfig(
        provider="a", id="cli-2024-01-01", model_class="local", context_window=10_000, max_output_tokens=500,
        billing="subscription", token_cap_per_day=200 + input_token_bound(REQUEST) + 50,
    )  # fmt: skip
    budget = BudgetRail(store.budgets, BudgetConfig(providers={"a": ProviderBudget(tokens_per_day=10**6)}), CLOCK)
    scope = "model:cli#tokens"
    for _ in range(3):  # two settled calls of 100 tokens leave room for exactly one more reservation
        a = attempt(model, "cli")
        await budget.enter(REQUEST, a, 0)
        a.usage = Usage(60, 40)
        await budget.leave(a)
    assert await store.budgets.spent(scope, DAY, unit="tokens") == 300
    assert await store.budgets.spent("provider:a#tokens", DAY, unit="tokens") == 300
    with pytest.raises(BudgetExceeded) as info:
        await budget.enter(REQUEST, attempt(model, "cli"), 0)
    assert (info.value.budget, info.value.unit, info.value.spent) == (scope, "tokens", 300.0)
    assert await store.budgets.spent(TENANT, DAY) == 0.0  # a subscription call costs no cents


async def test_a_metered_models_token_cap_refusal_holds_no_cents(store: SqliteStateStore) -> None:
    """A metered model with a token cap reserves cents and tokens; when the tokens refuse, the cents are let go."""
    model = metered(cap=input_token_bound(REQUEST) + 50)
    budget = rail(store)
    first = attempt(model)
    await budget.enter(REQUEST, first, 0)
    assert isinstance(first.holds["budget"], BudgetHold)
    assert [unit for _, unit in first.holds["budget"].reservations] == ["cents", "tokens"]
    with pytest.raises(BudgetExceeded) as info:
        await budget.enter(REQUEST, attempt(model), 0)
    assert (info.value.budget, info.value.unit) == ("model:mini#tokens", "tokens")
    reserved = estimate_cents(input_token_bound(REQUEST), 50, PRICE)
    assert await store.budgets.reserved(TENANT, DAY, CLOCK.wall()) == pytest.approx(reserved)  # the first's only


def test_the_rail_is_wanted_for_a_models_cap_alone() -> None:
    """BudgetRail.wanted: a provider's, a tenant's or a model's token cap calls for the rail; none, not."""
    base = """
[providers.a]
kind = "simulator"
format = "openai"

[models.cli]
provider = "a"
id = "cli-2024-01-01"
class = "local"
context_window = 10000
max_output_tokens = 100
"""
    assert not BudgetRail.wanted(parse_config(base + "price = { input = 1.0, output = 1.0 }\n"))
    assert BudgetRail.wanted(parse_config(base + 'billing = "subscription"\ntoken_cap_per_day = 1000\n'))
    assert BudgetRail.wanted(
        parse_config(base + "price = { input = 1.0, output = 1.0 }\n[budgets.tenants.acme]\nusd_per_day = 1.0\n")
    )

"""Budget policy: the config Structs, the scope keys, the day bucket and what a call reserves.

::

    BudgetConfig
    ├── providers.<name>            ProviderBudget   usd_per_day (metered), tokens_per_day (subscription)
    ├── tenants.<name>              TenantBudget     usd_per_day
    │   └── callers.<caller>        CallerBudget     usd_per_day, a sub-budget inside the tenant's
    └── reservation_ttl_s           how long a reservation of a process that died keeps counting

    models.<name>.token_cap_per_day (in the model's own config) is a token budget of that model.

A call reserves an upper bound before it starts (its input's ``input_token_bound`` and every
output token it may produce) and settles the real amount when it ends (the ``BudgetStore`` in
``interlock.adapters.stores._state_store`` does both atomically). A settlement above its
reservation is booked anyway and closes the reservation's scopes for the day
(``passes_reservation``): the bound did not hold, so the room that is left cannot be trusted.
Metered models spend cents against their provider's, tenant's and caller's budgets; subscription
models (a flat-rate plan, 0 cents a call) spend tokens against their provider's ``tokens_per_day``.
A model's ``token_cap_per_day`` counts its tokens whatever its billing. Budgets are per UTC day:
``day_bucket`` turns a wall-clock timestamp into the day's key.

Everything here is pure: time comes in as an argument, nothing is stored.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

import msgspec

from interlock._types import Usage
from interlock.policies._pricing import Price, cost_cents, estimate_cents

Unit = Literal["cents", "tokens"]
ScopeKind = Literal["provider", "tenant", "caller", "model"]
Billing = Literal["metered", "subscription"]

_CENTS_PER_USD = 100.0
# Sums of float cents drift by ~1e-16 per addition; this keeps ten 0.1-cent calls inside 1 cent.
SLACK = 1e-9


def _check_amount(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite amount >= 0, got {value!r}")


class CallerBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A caller's daily sub-budget inside its tenant's (both must have room for a call)."""

    usd_per_day: float

    def __post_init__(self) -> None:
        _check_amount("usd_per_day", self.usd_per_day)


class TenantBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant's daily spend in USD (None: no cap) and its callers' sub-budgets."""

    usd_per_day: float | None = None
    callers: dict[str, CallerBudget] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_amount("usd_per_day", self.usd_per_day)


class ProviderBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider's daily cap: USD for its metered models, tokens for its subscription models."""

    usd_per_day: float | None = None
    tokens_per_day: int | None = None

    def __post_init__(self) -> None:
        _check_amount("usd_per_day", self.usd_per_day)
        if self.tokens_per_day is not None and self.tokens_per_day < 0:
            raise ValueError(f"tokens_per_day must be >= 0, got {self.tokens_per_day!r}")


class BudgetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every daily budget; an absent entry is no cap.

    ``reservation_ttl_s = 900``: a reservation whose process died stops counting after this
    long. It must outlast the longest call (jobs' ``total_timeout_ms`` defaults to 600 s), or a
    slow call's reservation would lapse while it still runs.
    """

    providers: dict[str, ProviderBudget] = msgspec.field(default_factory=dict)
    tenants: dict[str, TenantBudget] = msgspec.field(default_factory=dict)
    reservation_ttl_s: float = 900.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reservation_ttl_s) and self.reservation_ttl_s > 0):
            raise ValueError(f"reservation_ttl_s must be a finite number > 0, got {self.reservation_ttl_s!r}")


class BudgetScope(msgspec.Struct, frozen=True):
    """One budget: ``key`` is how stores name it (``provider:openai``, ``caller:acme/svc``)."""

    kind: ScopeKind
    name: str
    unit: Unit = "cents"

    @property
    def key(self) -> str:
        """``<kind>:<name>``, with ``#tokens`` appended for a token budget (units never mix)."""
        base = f"{self.kind}:{self.name}"
        return base if self.unit == "cents" else f"{base}#tokens"

    @classmethod
    def provider(cls, name: str, unit: Unit = "cents") -> BudgetScope:
        """A provider's budget in ``unit``."""
        return cls("provider", name, unit)

    @classmethod
    def tenant(cls, tenant: str) -> BudgetScope:
        """A tenant's budget in cents."""
        return cls("tenant", tenant)

    @classmethod
    def caller(cls, tenant: str, caller: str) -> BudgetScope:
        """A caller's sub-budget in cents, named ``<tenant>/<caller>``."""
        return cls("caller", f"{tenant}/{caller}")

    @classmethod
    def model(cls, name: str) -> BudgetScope:
        """A model's daily token cap (``models.<name>.token_cap_per_day``)."""
        return cls("model", name, "tokens")


class BudgetPlan(msgspec.Struct, frozen=True):
    """What a call reserves: ``amount`` in ``unit`` against every ``(scope key, limit)`` in ``limits``.

    ``limits`` is narrowest first (caller, tenant, provider), so the budget a refusal names is
    the one closest to whoever asked. Empty ``limits``: no budget applies, reserve nothing.
    """

    unit: Unit
    amount: float
    limits: tuple[tuple[str, float], ...]


def day_bucket(wall: float) -> str:
    """The UTC date of epoch timestamp ``wall``, as ``YYYY-MM-DD``: the key of a day's budgets."""
    return datetime.fromtimestamp(wall, tz=UTC).date().isoformat()


def reservation_cents(
    input_tokens: int, max_output_tokens: int, price: Price, *, may_write_cache: bool = False
) -> float:
    """Cents to reserve for a metered call: its input and every output token it may produce."""
    return estimate_cents(input_tokens, max_output_tokens, price, may_write_cache=may_write_cache)


def reservation_tokens(input_tokens: int, max_output_tokens: int) -> int:
    """Tokens to reserve for a subscription call: its input and every output token it may produce."""
    return max(input_tokens, 0) + max(max_output_tokens, 0)


def usage_tokens(usage: Usage) -> int:
    """Tokens a finished call spent against a token budget: every prompt token and the output."""
    return usage.total_input_tokens + usage.output_tokens


def settle_amount(unit: Unit, usage: Usage, price: Price | None) -> float:
    """What a finished call really spent, in ``unit``: settle its reservation with this."""
    if unit == "tokens":
        return float(usage_tokens(usage))
    return 0.0 if price is None else cost_cents(usage, price)


def cents_limits(cfg: BudgetConfig, *, provider: str, tenant: str, caller: str) -> tuple[tuple[str, float], ...]:
    """The cent budgets a metered call must fit in, narrowest first, as ``(scope key, limit)``."""
    out: list[tuple[str, float]] = []
    tenant_cfg = cfg.tenants.get(tenant)
    if tenant_cfg is not None:
        caller_cfg = tenant_cfg.callers.get(caller)
        if caller_cfg is not None:
            out.append((BudgetScope.caller(tenant, caller).key, caller_cfg.usd_per_day * _CENTS_PER_USD))
        if tenant_cfg.usd_per_day is not None:
            out.append((BudgetScope.tenant(tenant).key, tenant_cfg.usd_per_day * _CENTS_PER_USD))
    provider_cfg = cfg.providers.get(provider)
    if provider_cfg is not None and provider_cfg.usd_per_day is not None:
        out.append((BudgetScope.provider(provider).key, provider_cfg.usd_per_day * _CENTS_PER_USD))
    return tuple(out)


def token_limits(cfg: BudgetConfig, *, provider: str) -> tuple[tuple[str, float], ...]:
    """The token budgets a subscription call must fit in, as ``(scope key, limit)``."""
    provider_cfg = cfg.providers.get(provider)
    if provider_cfg is None or provider_cfg.tokens_per_day is None:
        return ()
    return ((BudgetScope.provider(provider, "tokens").key, float(provider_cfg.tokens_per_day)),)


class BudgetedCall(msgspec.Struct, frozen=True, kw_only=True):
    """What the budgets need to know of one attempt: who asks, which model, and its token bounds.

    ``input_tokens`` is an upper bound (``input_token_bound``), ``max_output_tokens`` the most
    the call may produce; ``may_write_cache`` says the request marks prompt-cache breakpoints.
    """

    provider: str
    model: str
    tenant: str
    caller: str
    billing: Billing
    price: Price | None
    token_cap_per_day: int | None
    input_tokens: int
    max_output_tokens: int
    may_write_cache: bool = False


def plan_reservations(cfg: BudgetConfig, call: BudgetedCall) -> tuple[BudgetPlan, ...]:
    """What one call reserves, one plan per unit, each with at least one budget to fit in.

    A subscription call costs 0 cents, so only token budgets apply: its model's cap, then its
    provider's ``tokens_per_day``, in one plan (both held at once, or neither). A metered call
    reserves cents on caller, tenant and provider; a metered model with a ``token_cap_per_day``
    also reserves tokens on it. A metered model without a price (a free local server) reserves
    0 cents, which fits every budget that is not already full.
    """
    tokens = float(reservation_tokens(call.input_tokens, call.max_output_tokens))
    model_cap: tuple[tuple[str, float], ...] = ()
    if call.token_cap_per_day is not None:
        model_cap = ((BudgetScope.model(call.model).key, float(call.token_cap_per_day)),)
    plans: tuple[BudgetPlan, ...]
    if call.billing == "subscription":
        plans = (BudgetPlan("tokens", tokens, model_cap + token_limits(cfg, provider=call.provider)),)
    else:
        amount = 0.0
        if call.price is not None:
            amount = reservation_cents(
                call.input_tokens, call.max_output_tokens, call.price, may_write_cache=call.may_write_cache
            )
        cents = cents_limits(cfg, provider=call.provider, tenant=call.tenant, caller=call.caller)
        plans = (BudgetPlan("cents", amount, cents), BudgetPlan("tokens", tokens, model_cap))
    return tuple(plan for plan in plans if plan.limits)


def passes_reservation(reserved: float, actual: float) -> bool:
    """Whether a settlement of ``actual`` passed its reservation of ``reserved`` (beyond float drift)."""
    return actual > reserved + SLACK

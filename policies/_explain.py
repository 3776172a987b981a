"""What ``explain`` says of a request: the chain it would take, each model admitted or skipped and why.

Pure: the router's resolution (``policies._routing``), a snapshot of each provider's admission
state and each candidate's budget rooms go in; an ``Explanation`` comes out. The gathering (the
router's plan, the providers' health, the state store's budgets) is ``interlock.actors._explain``;
the rendering ``interlock.adapters.report._explain``.

A candidate is judged as the request run would judge it, in the same order: the routing gates
first (``capability``, ``sensitivity``, ``rule``, ``tenant_allow_list``, ``context_window``,
``costlier_not_allowed``: the job does not allow a costlier fallback), then at run time a
provider with no actor (``disabled``: no key in the environment), the budget rail (``budget``:
a daily budget without room for the call's worst case), then the provider's admission
(``cooling_down`` after a rate limit, ``unhealthy`` probes, ``no_slot``, ``breaker_open``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from interlock.policies._budget import SLACK
from interlock.policies._config import ModelConfig
from interlock.policies._routing import Resolution


class BudgetRoom(msgspec.Struct, frozen=True, kw_only=True):
    """One daily budget a candidate's call reserves against, as the state store holds it now.

    ``scope`` is the store's key (``tenant:acme``, ``provider:sim_openai``, ``model:mini#tokens``);
    ``used`` is today's settled spend plus live reservations; ``needed`` the call's worst case
    (its input bound and every output token it may write), in ``unit``. A ``closed`` scope takes no
    reservation today (a settlement passed its reservation).
    """

    scope: str
    unit: Literal["cents", "tokens"]
    limit: float
    used: float
    needed: float
    closed: bool = False

    @property
    def left(self) -> float:
        """What the budget has left today, never below zero."""
        return max(0.0, self.limit - self.used)

    @property
    def fits(self) -> bool:
        """Whether the call's worst case fits in what is left."""
        return not self.closed and self.used + self.needed <= self.limit + SLACK


class ProviderSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's admission state as ``door.health()`` reports it; ``enabled`` False: it has no actor."""

    enabled: bool
    breaker: str = ""
    cooling_down_s: float = 0.0
    probes_healthy: bool = True
    free_slots: int = 1
    slot_wait_ms: int = 0


class ExplainedCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """One model of the request's chain: whether it would be tried, and if not, why.

    ``reason`` is empty for an admitted model, else the gate or refusal that leaves it out (see
    ``interlock.policies._explain``) with ``detail`` saying which rule, budget or number.
    ``breaker`` is its provider's breaker (``closed``, ``open``, ``half_open``; ``""`` when the
    provider is disabled). ``max_cost_cents`` is the call's worst case; ``budgets`` the daily
    budgets it reserves against. ``degrade``: it comes after the chain (``max_degrade``);
    ``costlier``: a fallback dearer than the first candidate, which the job allows.
    """

    model: str
    provider: str
    model_class: str
    admitted: bool
    reason: str = ""
    detail: str = ""
    breaker: str = ""
    degrade: bool = False
    costlier: bool = False
    max_cost_cents: float = 0.0
    budgets: tuple[BudgetRoom, ...] = ()


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """The route a request would take, without calling a model (``door.explain`` / ``interlock explain``).

    ``candidates`` are every model of the chain in the order the run would consider them, each
    admitted or skipped with its reason; ``serves`` is the first admitted one (None: the request
    would fail). ``sensitivity`` is the request's as planned: ``pii`` when the caller said so or
    when the scan's detectors (``pii_detected``) fired. ``rules`` are the ``rules[i]`` that matched.
    ``hedge`` is ``off``, ``fixed`` or ``p95``, with the delay the router would use now. ``notes``
    say what was decided without a model (a classifier's label) or what the chain cannot show.
    """

    job: str
    tenant: str
    sensitivity: str
    input_tokens: int
    first_choice: str
    candidates: tuple[ExplainedCandidate, ...]
    serves: str | None
    pii_detected: tuple[str, ...] = ()
    pinned: str | None = None
    rules: tuple[str, ...] = ()
    hedge: Literal["off", "fixed", "p95"] = "off"
    hedge_delay_ms: float | None = None
    max_hedges: int = 0
    notes: tuple[str, ...] = ()


def admission_skip(snapshot: ProviderSnapshot | None) -> tuple[str, str] | None:
    """Why the provider would refuse the call now (reason, detail), in its actor's order; None: it admits."""
    if snapshot is None or not snapshot.enabled:
        return "disabled", "no provider actor (its API key is not set)"
    if snapshot.cooling_down_s > 0:
        return "cooling_down", f"for {snapshot.cooling_down_s:.1f} s more"
    if not snapshot.probes_healthy:
        return "unhealthy", "its health probes fail"
    if snapshot.free_slots == 0 and snapshot.slot_wait_ms <= 0:
        return "no_slot", "every slot is busy"
    if snapshot.breaker == "open":
        return "breaker_open", "its breaker is open"
    return None


def budget_skip(rooms: tuple[BudgetRoom, ...]) -> str | None:
    """The first budget without room for the call, described; None when every one has room."""
    for room in rooms:
        if not room.fits:
            if room.closed:
                return f"{room.scope} is closed for today"
            return f"{room.scope}: {_amount(room.left, room.unit)} left, needs {_amount(room.needed, room.unit)}"
    return None


def _amount(value: float, unit: str) -> str:
    return f"{value / 100:.4f} USD" if unit == "cents" else f"{value:.0f} tokens"


def explain_resolution(
    resolution: Resolution,
    models: Mapping[str, ModelConfig],
    *,
    sensitivity: str,
    input_tokens: int,
    providers: Mapping[str, ProviderSnapshot],
    budgets: Mapping[str, tuple[BudgetRoom, ...]],
    max_cost: Mapping[str, float],
    pii_detected: tuple[str, ...] = (),
    hedge: tuple[Literal["off", "fixed", "p95"], float | None, int] = ("off", None, 0),
    notes: tuple[str, ...] = (),
) -> Explanation:
    """Fold a resolution and the run-time state into the explanation, in the chain's order."""
    admitted = {c.name: c for c in resolution.candidates}
    gated = {s.model: s for s in resolution.skipped}
    out: list[ExplainedCandidate] = []
    for name in resolution.order or (*admitted, *gated):
        candidate, gate, model = admitted.get(name), gated.get(name), models[name]
        snapshot = providers.get(model.provider)
        rooms = budgets.get(name, ())
        if gate is not None:
            skip: tuple[str, str] | None = (gate.reason, gate.detail)
        elif candidate is None:
            continue
        elif snapshot is None or not snapshot.enabled:
            skip = admission_skip(snapshot)
        elif (over := budget_skip(rooms)) is not None:
            skip = ("budget", over)
        else:
            skip = admission_skip(snapshot)
        out.append(
            ExplainedCandidate(
                model=name,
                provider=model.provider,
                model_class=model.model_class,
                admitted=skip is None,
                reason=skip[0] if skip else "",
                detail=skip[1] if skip else "",
                breaker=snapshot.breaker if snapshot is not None and snapshot.enabled else "",
                degrade=candidate.degrade if candidate is not None else False,
                costlier=candidate.costlier if candidate is not None else False,
                max_cost_cents=max_cost.get(name, 0.0),
                budgets=rooms,
            )
        )
    mode, delay_ms, max_hedges = hedge
    return Explanation(
        job=resolution.job,
        tenant=resolution.tenant,
        sensitivity=sensitivity,
        input_tokens=input_tokens,
        first_choice=resolution.first_choice,
        candidates=tuple(out),
        serves=next((c.model for c in out if c.admitted), None),
        pii_detected=pii_detected,
        pinned=resolution.pinned,
        rules=resolution.rules,
        hedge=mode,
        hedge_delay_ms=delay_ms,
        max_hedges=max_hedges,
        notes=notes,
    )

"""The router actor: decides each request's chain and hedging, and learns from the answers.

Its mailbox only decides; a request never waits behind another. ``RouteRequest`` is answered at
once with a ``Plan`` — the resolved chain (routing table -> rules -> tenant allow-list -> pinned
override) and the hedge policy (a fixed delay, or the first candidate's rolling p95 TTFT) — and
the request then runs in its caller's task (``interlock.actors.request._serving``). The router keeps the
state that outlives one request: each job's hedge budget (a token bucket) and each model's
TTFT window, fed by ``Learned`` after every answer.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable

import msgspec

from interlock._actor import Actor
from interlock._errors import InterlockError
from interlock._types import ChatRequest
from interlock.actors.request._race import HedgePolicy
from interlock.policies._config import Config
from interlock.policies._hedge import HedgeBudget, full_budget, hedge_delay_s, on_success, spend_hedge
from interlock.policies._latency import RollingLatency
from interlock.policies._pii import detect, mark_pii, request_texts, unmarked
from interlock.policies._routing import Operation, Resolution, pii_scan, resolve
from interlock.policies._tokens import estimate_input_tokens, estimate_text_tokens
from interlock.policies._tool_validate import check_tool_schemas

_random = random.Random()  # ids need uniqueness, not secrecy: no OS entropy per request


def new_request_id(wall: float) -> str:
    """A time-ordered id (milliseconds first, then 64 random bits): the ledger's key index stays append-only."""
    return f"{int(wall * 1000):012x}{_random.getrandbits(64):016x}"


class RouteRequest(msgspec.Struct, frozen=True, tag=True):
    """Plan ``request``; sent with ``ask``, answered with its ``Plan``.

    ``chain`` replaces the job's chain: a classifier's pick for this one request. Every plan —
    the first, a classifier's re-plan, an ensemble member's — is made here, by one function.
    """

    request: ChatRequest
    chain: tuple[str, ...] | None = None
    operation: Operation = "chat"  # "embed": the messages are texts to embed, one per message


class SpendHedge(msgspec.Struct, frozen=True, tag=True):
    """May ``job`` hedge now? Takes a token from its hedge budget when it may; answered with a bool."""

    job: str


class Learned(msgspec.Struct, frozen=True, tag=True):
    """A request of ``job`` was answered by ``model``: refill the hedge budget, add the TTFT."""

    job: str
    model: str
    ttft_s: float | None
    hedge: bool


RouterMsg = RouteRequest | SpendHedge | Learned


class Plan:
    """The router's answer to ``RouteRequest``: the chain, the input-token estimate, the hedge policy.

    ``request`` is the request as planned: the one asked about, or, when the PII scan found
    personal data in it, that request marked ``sensitivity = "pii"`` (``policies._pii.mark_pii``),
    which the caller serves from then on. ``pii_detected`` names the detectors that fired.
    """

    __slots__ = ("hedge", "pii_detected", "request", "resolution", "tokens")

    def __init__(
        self,
        resolution: Resolution,
        tokens: int,
        hedge: HedgePolicy,
        request: ChatRequest,
        pii_detected: tuple[str, ...] = (),
    ) -> None:
        self.resolution = resolution
        self.tokens = tokens
        self.hedge = hedge
        self.request = request
        self.pii_detected = pii_detected


class RouterActor(Actor[RouterMsg]):
    """Job chains and hedging decisions; the hedge budgets and TTFT windows they learn from."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self._config = config
        self._budgets: dict[str, HedgeBudget] = {}
        self._ttft: dict[str, RollingLatency] = {}
        self._spenders: dict[str, Callable[[], Awaitable[bool]]] = {}

    async def receive(self, msg: RouterMsg) -> Plan | bool | None:
        match msg:
            case RouteRequest(request=request, chain=chain, operation=operation):
                return self.plan(request, chain, operation)
            case Learned():
                self._learn(msg)
                return None
            case SpendHedge(job=job):
                return self._spend(job)
        return None

    def plan(self, request: ChatRequest, chain: tuple[str, ...] | None = None, operation: Operation = "chat") -> Plan:
        """The chain and hedge policy for ``request`` (``chain`` replacing the job's own).

        Tool schemas are checked here, before any rail or upstream sees the request: a bad one is
        a ``RequestError`` naming the tool, never a call paid for upstream. An embed's context
        window bounds each text alone: its estimate is the longest text's.

        A chat or an embed the caller did not mark is scanned for personal data here, the one
        place every plan is made (``policies._pii``): when a detector fires it is re-resolved
        marked ``pii`` (an embed's texts are what leaves for the provider, as a chat's messages
        are). A marked request costs one comparison; the scan runs only with its tenant's or
        job's detectors on.
        """
        if request.tools:
            check_tool_schemas(request.tools)
        if operation == "embed":
            tokens = max((estimate_text_tokens(m.plain_text) for m in request.messages), default=0)
        else:
            tokens = estimate_input_tokens(request)
        resolution = resolve(self._config, request, tokens, chain, operation)
        found: tuple[str, ...] = ()
        if unmarked(request):
            detectors, regions = pii_scan(self._config, request.tenant, resolution.job)
            found = detect(request_texts(request), detectors, regions) if detectors else ()
            if found:
                request = mark_pii(request, found)
                resolution = resolve(self._config, request, tokens, chain, operation)
        return Plan(resolution, tokens, self._hedge_policy(resolution), request, found)

    def _hedge_policy(self, resolution: Resolution) -> HedgePolicy:
        spec = resolution.policy.hedge_delay
        if spec is None:
            return _NO_HEDGE
        first = resolution.candidates[0].name if resolution.candidates else ""
        delay = hedge_delay_s(spec, self._ttft.get(first))
        return HedgePolicy(delay, resolution.policy.max_hedges, self._spender(resolution.job))

    def _spender(self, job: str) -> Callable[[], Awaitable[bool]]:
        """Asks this router to spend a hedge token for ``job`` (a request runs outside the mailbox)."""
        spend = self._spenders.get(job)
        if spend is None:
            ref = self.ref

            async def spend() -> bool:
                with contextlib.suppress(InterlockError):
                    allowed: bool = await ref.ask(SpendHedge(job), timeout=5.0)
                    return allowed
                return False  # no router to ask: no hedge

            spend = self._spenders[job] = spend
        return spend

    def _spend(self, job: str) -> bool:
        budget = self._budgets.get(job) or full_budget(self._config.hedge_budget)
        budget, ok = spend_hedge(budget, self._config.hedge_budget)
        self._budgets[job] = budget
        return ok

    def _learn(self, msg: Learned) -> None:
        budget = self._budgets.get(msg.job) or full_budget(self._config.hedge_budget)
        self._budgets[msg.job] = on_success(budget, self._config.hedge_budget)
        if msg.ttft_s is not None and not msg.hedge:
            self._ttft.setdefault(msg.model, RollingLatency()).add(msg.ttft_s)


async def _never() -> bool:
    return False


_NO_HEDGE = HedgePolicy(None, 0, _never)  # shared by every request of a job that does not hedge

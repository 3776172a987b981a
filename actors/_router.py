"""The router actor: resolves each request's chain and runs it in its own task.

The mailbox only decides; a request never waits behind another. Each run ends with exactly one
request record and one record per attempt sent to the ledger, whatever happened: success,
fallback, hedge, total failure, client gone or shutdown (the records are sent under a shield).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from interlock._actor import Actor, ActorRef
from interlock._errors import ChainExhausted, ConsumerGone, ErrorClass, InterlockError
from interlock._records import Outcome, RequestRecord
from interlock._streams import EventSink
from interlock._types import ChatRequest, Route, RouteEvent
from interlock.actors._attempt import Attempt, _ms
from interlock.actors._request_run import HedgePolicy, RequestRun
from interlock.policies._config import Config, JobConfig
from interlock.policies._hedge import HedgeBudget, HedgeDelay, full_budget, hedge_delay_s, on_success, spend_hedge
from interlock.policies._latency import RollingLatency
from interlock.policies._routing import Resolution, resolve
from interlock.policies._tokens import estimate_input_tokens


class RouteRequest(msgspec.Struct, frozen=True, tag=True):
    """Serve ``request``; sent with ``ask_stream``: its events, then a ``RouteEvent``."""

    request: ChatRequest


def new_request_id(wall: float) -> str:
    """A time-ordered id (milliseconds first, then 64 random bits): the ledger's key index stays append-only."""
    return f"{int(wall * 1000):012x}{uuid.uuid4().hex[:16]}"


class CancelRequest(msgspec.Struct, frozen=True, tag=True):
    """The caller went away: stop serving ``request_id`` (its record says cancelled)."""

    request_id: str


RouterMsg = RouteRequest | CancelRequest


class RouterActor(Actor[RouterMsg]):
    """Job chains, fallback, hedging, mid-stream policy; one task per request."""

    def __init__(
        self, config: Config, providers: Callable[[str], ActorRef[Any] | None], ledger: ActorRef[Any]
    ) -> None:
        super().__init__()
        self._config = config
        self._providers = providers
        self._ledger = ledger
        self._budgets: dict[str, HedgeBudget] = {}
        self._ttft: dict[str, RollingLatency] = {}
        self._running = 0
        self._idle = anyio.Event()
        self._scopes: dict[str, anyio.CancelScope] = {}

    async def on_stop(self) -> None:
        # Requests in flight finish and record themselves; the shutdown deadline bounds the wait.
        while self._running:
            await self._idle.wait()

    async def receive(self, msg: RouterMsg) -> Any:
        if isinstance(msg, CancelRequest):
            scope = self._scopes.get(msg.request_id)
            if scope is not None:
                scope.cancel()
            return None
        sink = self.detach_stream()
        request = msg.request
        if not request.request_id:
            request = msgspec.structs.replace(request, request_id=new_request_id(self.clock.wall()))
        self.tasks.start_soon(self._serve_scoped, request, sink)
        return None

    async def _serve_scoped(self, request: ChatRequest, sink: EventSink[Any]) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[request.request_id] = scope
            try:
                await self._serve_request(request, sink)
            finally:
                self._scopes.pop(request.request_id, None)

    async def _serve_request(self, request: ChatRequest, sink: EventSink[Any]) -> None:
        request_id = request.request_id
        ts, started = self.clock.wall(), self.clock.now()
        run: RequestRun | None = None
        recorded = False
        self._running += 1
        try:
            async with sink:
                try:
                    resolution = resolve(self._config, request, estimate_input_tokens(request))
                    run = RequestRun(request, resolution, self._providers, self.clock, self._hedge_policy(resolution))
                    winner = await run.run(sink)
                except InterlockError as exc:
                    # Recorded before the caller hears of it: a stream's end implies its rows are queued.
                    recorded = True
                    with anyio.CancelScope(shield=True):
                        await self._record(request, request_id, ts, started, run, exc)
                    raise
                route = self._route(run, winner, started)
                self._learn(run, winner)
                recorded = True
                await self._record(request, request_id, ts, started, run, None)
                await sink.send(RouteEvent(route))
        except InterlockError:
            pass  # the caller got it through the stream
        finally:
            if not recorded:
                with anyio.CancelScope(shield=True):
                    await self._record(request, request_id, ts, started, run, ConsumerGone("cancelled"))
            self._running -= 1
            if not self._running:
                self._idle.set()
                self._idle = anyio.Event()

    def _hedge_policy(self, resolution: Resolution) -> HedgePolicy:
        job = resolution.policy
        first = resolution.candidates[0].name if resolution.candidates else ""
        delay = _delay(job, self._ttft.get(first))

        def spend() -> bool:
            budget = self._budgets.get(resolution.job) or full_budget(self._config.hedge_budget)
            budget, ok = spend_hedge(budget, self._config.hedge_budget)
            self._budgets[resolution.job] = budget
            return ok

        return HedgePolicy(delay, job.max_hedges if delay is not None else 0, spend)

    def _learn(self, run: RequestRun, winner: Attempt) -> None:
        job = run.resolution.job
        budget = self._budgets.get(job) or full_budget(self._config.hedge_budget)
        self._budgets[job] = on_success(budget, self._config.hedge_budget)
        if winner.ttft is not None and not winner.hedge:
            self._ttft.setdefault(winner.candidate.name, RollingLatency()).add(winner.ttft)

    def _route(self, run: RequestRun, winner: Attempt, started: float) -> Route:
        first = run.resolution.candidates[0] if run.resolution.candidates else None
        degraded = run.resumed or (first is not None and winner.candidate.name != first.name)
        return Route(
            model=winner.candidate.name,
            provider=winner.candidate.provider,
            model_class=winner.candidate.model.model_class,
            task=run.resolution.job,
            attempts=tuple(a.summary() for a in run.attempts),
            degraded=degraded,
            degraded_reason=_reason(run, winner) if degraded else None,
            hedged=run.hedged,
            cost_cents=sum(a.cost() for a in run.attempts),
            ttft_ms=_ms(None if winner.ttft is None else winner.started - started + winner.ttft),
            ttlt_ms=_ms(self.clock.now() - started),
        )

    async def _record(
        self,
        request: ChatRequest,
        request_id: str,
        ts: float,
        started: float,
        run: RequestRun | None,
        error: BaseException | None,
    ) -> None:
        attempts = run.attempts if run is not None else []
        task = (run.resolution.job if run is not None else request.task) or ""
        for attempt in attempts:
            if attempt.error is None and attempt.finish is None and attempt.cancel_reason is None:
                attempt.cancel_reason = "client_gone" if isinstance(error, ConsumerGone) else "cancelled"
            await self._ledger.tell(attempt.record(request, request_id, task, ts))
        winner = run.winner if run is not None else None
        elapsed = self.clock.now() - started
        ttft = None if winner is None or winner.ttft is None else winner.started - started + winner.ttft
        record = _request_record(request, request_id, task, ts, run, winner, error, (ttft, elapsed))
        await self._ledger.tell(record)


def _delay(job: JobConfig, window: RollingLatency | None) -> float | None:
    setting = job.hedge_after_ms
    if setting is None:
        return None
    if setting == "p95":
        spec = HedgeDelay(mode="p95", min_ms=job.hedge_min_ms, max_ms=job.hedge_max_ms, fallback_ms=job.hedge_max_ms)
    else:
        spec = HedgeDelay(mode="fixed", fixed_ms=setting)
    return hedge_delay_s(spec, window)


def _reason(run: RequestRun, winner: Attempt) -> str:
    if run.resumed:
        return "mid_stream_resume"
    causes = [str(a.error.kind) for a in run.attempts if a is not winner and a.error is not None]
    if winner.hedge:
        causes.append("slow_first_token")
    skipped = [s.model for s in run.resolution.skipped]
    reason = ",".join(c for c in causes if c) or "fallback"
    return reason + (f"; skipped {','.join(skipped)}" if skipped else "")


def _request_record(
    request: ChatRequest,
    request_id: str,
    task: str,
    ts: float,
    run: RequestRun | None,
    winner: Attempt | None,
    error: BaseException | None,
    timings: tuple[float | None, float],
) -> RequestRecord:
    """The request's row; TTFT and TTLT are measured from when the request entered the router."""
    attempts = run.attempts if run is not None else []
    usage = [a.usage for a in attempts]
    first = run.resolution.candidates[0].name if run is not None and run.resolution.candidates else None
    degraded = winner is not None and ((run is not None and run.resumed) or winner.candidate.name != first)
    kind: str | None = None
    if isinstance(error, ConsumerGone) or (error is not None and not isinstance(error, InterlockError)):
        kind = ErrorClass.CANCELLED
    elif isinstance(error, InterlockError):
        kind = error.kind
    outcome: Outcome = "ok" if error is None else ("cancelled" if kind == ErrorClass.CANCELLED else "error")
    return RequestRecord(
        request_id=request_id,
        ts=ts,
        tenant=request.tenant,
        caller=request.caller,
        task=task,
        model_class=winner.candidate.model.model_class if winner else "",
        model=winner.candidate.name if winner else "",
        provider=winner.candidate.provider if winner else "",
        outcome=outcome,
        input_tokens=sum(u.input_tokens for u in usage),
        output_tokens=sum(u.output_tokens for u in usage),
        cache_read_tokens=sum(u.cache_read_tokens for u in usage),
        cache_write_tokens=sum(u.cache_write_tokens for u in usage),
        cost_cents=sum(a.cost() for a in attempts),
        ttft_ms=_ms(timings[0]),
        ttlt_ms=_ms(timings[1]) if winner else None,
        error=str(kind) if kind else None,
        error_detail=str(error)[:300] if error is not None and not isinstance(error, ChainExhausted) else "",
        degraded=degraded,
        degraded_reason=_reason(run, winner) if degraded and run and winner else None,
        hedged=run.hedged if run is not None else False,
        attempts=len(attempts),
    )

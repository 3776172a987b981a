"""The router actor: resolves each request's chain and runs it in its own task.

The mailbox only decides; a request never waits behind another. Each run ends with exactly one
request record and one record per attempt sent to the ledger, whatever happened: success,
fallback, hedge, total failure, client gone or shutdown (the records are sent under a shield).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from interlock._actor import Actor, ActorRef
from interlock._errors import ConsumerGone, InterlockError
from interlock._records import LedgerRecord
from interlock._streams import EventSink
from interlock._types import ChatRequest, ChatResponse, RouteEvent
from interlock.actors._assemble import BufferSink, assemble, collect
from interlock.actors._attempt import Attempt
from interlock.actors._ensemble import run_ensemble
from interlock.actors._ledger_actor import Records, TraceContext
from interlock.actors._rail_cache import CacheRail, replay
from interlock.actors._rail_lease import LeaseRail
from interlock.actors._rail_verify import VerifyRail
from interlock.actors._rails import AttemptRails
from interlock.actors._request_run import HedgePolicy, RequestRun
from interlock.actors._route_records import cache_hit_record, cached_route, request_record, route_of
from interlock.actors._stall_watch import StallWatch
from interlock.policies._classifier import classify_by_rules, label_request, parse_label
from interlock.policies._config import Config, JobConfig
from interlock.policies._hedge import HedgeBudget, HedgeDelay, full_budget, hedge_delay_s, on_success, spend_hedge
from interlock.policies._latency import RollingLatency
from interlock.policies._quality import verdict_string
from interlock.policies._routing import Resolution, resolve
from interlock.policies._tokens import estimate_input_tokens
from interlock.policies._tool_validate import ToolCallProblem, corrective_message, validate_tool_calls
from interlock.policies._verify import Verdict, Verifier

_random = random.Random()  # ids need uniqueness, not secrecy: no OS entropy per request


@dataclass(frozen=True, kw_only=True)
class RouterRails:
    """The rails folded once at start-up: the response cache, the attempt rails, the lease renewer."""

    cache: CacheRail | None = None
    attempt: AttemptRails = field(default_factory=lambda: AttemptRails(()))
    lease: LeaseRail | None = None
    verifiers: dict[str, tuple[Verifier, ...]] = field(default_factory=dict)  # Python-side, per job


class RouteRequest(msgspec.Struct, frozen=True, tag=True):
    """Serve ``request``; sent with ``ask_stream``: its events, then a ``RouteEvent``."""

    request: ChatRequest


def new_request_id(wall: float) -> str:
    """A time-ordered id (milliseconds first, then 64 random bits): the ledger's key index stays append-only."""
    return f"{int(wall * 1000):012x}{_random.getrandbits(64):016x}"


class CancelRequest(msgspec.Struct, frozen=True, tag=True):
    """The caller went away: stop serving ``request_id`` (its record says cancelled)."""

    request_id: str


RouterMsg = RouteRequest | CancelRequest


class RouterActor(Actor[RouterMsg]):
    """Job chains, fallback, hedging, mid-stream policy; one task per request."""

    def __init__(
        self,
        config: Config,
        providers: Callable[[str], ActorRef[Any] | None],
        ledger: ActorRef[Any],
        rails: RouterRails | None = None,
    ) -> None:
        super().__init__()
        rails = rails or RouterRails()
        self._config = config
        self._cache = rails.cache
        self._rails = rails.attempt
        self._lease = rails.lease
        self._extra_verifiers = rails.verifiers
        self._verify = VerifyRail(config, self._ask_self)
        self._watch: StallWatch | None = None
        self._providers = providers
        self._ledger = ledger
        self._budgets: dict[str, HedgeBudget] = {}
        self._ttft: dict[str, RollingLatency] = {}
        self._running = 0
        self._idle: anyio.Event | None = None  # made only when a stop waits for in-flight work
        self._scopes: dict[str, anyio.CancelScope] = {}

    async def on_start(self) -> None:
        self._watch = StallWatch(self.clock)
        self.tasks.start_soon(self._watch.run_forever)
        if self._lease is not None:
            self.tasks.start_soon(self._lease.renew_forever)

    async def _ask_self(self, request: ChatRequest) -> ChatResponse:
        """A sub-request (a reviewer, a second opinion) through this router and every rail."""
        return await collect(await self.ref.ask_stream(RouteRequest(request)))

    async def on_stop(self) -> None:
        # Requests in flight finish and record themselves; the shutdown deadline bounds the wait.
        while self._running:
            self._idle = anyio.Event()
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
        ts, started = self.clock.wall(), self.clock.now()
        run: RequestRun | None = None
        recorded = False
        self._running += 1
        try:
            async with sink:
                try:
                    tokens = estimate_input_tokens(request)
                    resolution = resolve(self._config, request, tokens)
                    route_label: str | None = None
                    route_detail = ""
                    if resolution.policy.classifier is not None:
                        resolution, route_label, route_detail = await self._classify(request, resolution, tokens)
                    request = _with_prompt_cache(request, resolution.policy)
                    key = self._cache_key(request, resolution)
                    if key is not None and await self._serve_cached(request, resolution, key, ts, sink):
                        recorded = True
                        return
                    run = self._member_run(request, resolution, tokens)
                    run.route_label, run.route_detail = route_label, route_detail
                    winner, answer = await self._answer(run, request, sink)
                except InterlockError as exc:
                    # Recorded before the caller hears of it: a stream's end implies its rows are queued.
                    recorded = True
                    with anyio.CancelScope(shield=True):
                        await self._record(request, ts, started, run, exc)
                    raise
                self._learn(run, winner)
                recorded = True
                timings = await self._record(request, ts, started, run, None)
                if key is not None and answer is not None and (winner.verdict or "accept").startswith("accept"):
                    await self._cache.store(key, answer, resolution.policy.cache_ttl_s or 0)  # type: ignore[union-attr]
                await sink.send(RouteEvent(route_of(run, winner, timings)))
        except InterlockError:
            pass  # the caller got it through the stream
        finally:
            if not recorded:
                with anyio.CancelScope(shield=True):
                    await self._record(request, ts, started, run, ConsumerGone("cancelled"))
            self._running -= 1
            if not self._running and self._idle is not None:
                self._idle.set()

    def _member_run(self, request: ChatRequest, resolution: Resolution, tokens: int | None = None) -> RequestRun:
        hedge = self._hedge_policy(resolution)
        return RequestRun(
            request, resolution, self._providers, self.clock, hedge, self._rails, self._watch, input_tokens=tokens
        )

    async def _classify(
        self, request: ChatRequest, resolution: Resolution, tokens: int
    ) -> tuple[Resolution, str | None, str]:
        """Pick the chain by the job's classifier: rules, then the small model, then the default label."""
        job = resolution.policy
        spec = job.classifier
        assert spec is not None
        found = classify_by_rules(spec, request, tokens)
        label, decided_by = found.label, found.decided_by
        if label is None and spec.model is not None:
            try:
                reply = await self._ask_self(label_request(spec, request))
                label = parse_label(reply.content, list(spec.labels))
                decided_by = "model" if label is not None else "none"
            except InterlockError:
                label = None
        if label is None and spec.default_label is not None:
            label, decided_by = spec.default_label, "default"
        chain = spec.labels.get(label) if label is not None else None
        if chain:
            jobs = {**self._config.jobs, resolution.job: msgspec.structs.replace(job, chain=chain, classifier=None)}
            resolution = resolve(msgspec.structs.replace(self._config, jobs=jobs), request, tokens)
        detail = _detail_json({"decided_by": decided_by, "features": found.features, "chain": chain or job.chain})
        return resolution, label, detail

    def _cache_key(self, request: ChatRequest, resolution: Resolution) -> str | None:
        if self._cache is None or not resolution.policy.cache_ttl_s or request.metadata.get("cache") == "off":
            return None
        return CacheRail.key(request, resolution.job)

    async def _serve_cached(
        self, request: ChatRequest, resolution: Resolution, key: str, ts: float, sink: EventSink[Any]
    ) -> bool:
        """Replay a cached answer; False on a miss (or when the caller asked for a refresh)."""
        assert self._cache is not None
        if request.metadata.get("cache") == "refresh":
            return False
        hit = await self._cache.lookup(key)
        if hit is None:
            return False
        await self._ledger.tell(cache_hit_record(request, resolution.job, ts, hit))
        for event in replay(hit):
            await sink.send(event)
        await sink.send(RouteEvent(cached_route(hit, resolution.job)))
        return True

    async def _answer(
        self, run: RequestRun, request: ChatRequest, sink: EventSink[Any]
    ) -> tuple[Attempt, ChatResponse | None]:
        """Walk the chain; jobs that verify (or check tool calls) hear the answer only once it is judged."""
        job = run.resolution.policy
        if job.ensemble is not None:
            winner, answer, events = await run_ensemble(
                self._config, job.ensemble, request, run, self._member_run, self._ask_self
            )
            for event in events:
                await sink.send(event)
            return winner, answer
        check_tools = bool(request.tools) and job.tool_retry
        verifiers = (*job.verify, *self._extra_verifiers.get(run.resolution.job, ()))
        if not (verifiers or job.cascade or check_tools):
            winner = await run.run(sink)
            return winner, assemble(winner)
        retried = False
        while True:
            buffer = BufferSink()
            winner = await run.run(buffer)  # type: ignore[arg-type]
            answer = assemble(winner)
            problems = validate_tool_calls(request.tools, answer.tool_calls) if check_tools else []
            if problems and not retried:
                retried = True  # one corrective retry on the same model, then the problems are reported
                run.retry_on(winner.candidate, _corrected(request, problems))
                winner.verdict = verdict_string(Verdict(False, _problem_text(problems), "tool_calls"))
                continue
            verdict = Verdict(False, _problem_text(problems), "tool_calls") if problems else None
            if verifiers and verdict is None:
                verdict = await self._verify.judge(verifiers, request, answer, winner)
            winner.verdict = verdict_string(verdict) if verdict is not None else None
            if verdict is None or verdict.accepted or not job.cascade or not run.has_pending:
                for event in buffer.events:
                    await sink.send(event)
                return winner, answer
            run.escalated = True

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

    async def _record(
        self, request: ChatRequest, ts: float, started: float, run: RequestRun | None, error: BaseException | None
    ) -> tuple[float | None, float]:
        """Tell the ledger every attempt row and the one request row; returns the request's (TTFT, TTLT)."""
        request_id = request.request_id
        traceparent = request.metadata.get("traceparent")
        if traceparent:
            await self._ledger.tell(TraceContext(request_id, traceparent))
        attempts = run.attempts if run is not None else []
        task = (run.resolution.job if run is not None else request.task) or ""
        rows: list[LedgerRecord] = []
        for attempt in attempts:
            if attempt.error is None and attempt.finish is None and attempt.cancel_reason is None:
                attempt.cancel_reason = "client_gone" if isinstance(error, ConsumerGone) else "cancelled"
            rows.append(attempt.record(request, request_id, task, ts, started, self.clock.now()))
        winner = run.winner if run is not None else None
        elapsed = self.clock.now() - started
        ttft = None if winner is None or winner.ttft is None else winner.started - started + winner.ttft
        rows.append(request_record(request, request_id, task, ts, run, winner, error, (ttft, elapsed)))
        await self._ledger.tell(Records(tuple(rows)))
        return ttft, elapsed


def _delay(job: JobConfig, window: RollingLatency | None) -> float | None:
    setting = job.hedge_after_ms
    if setting is None:
        return None
    if setting == "p95":
        spec = HedgeDelay(mode="p95", min_ms=job.hedge_min_ms, max_ms=job.hedge_max_ms, fallback_ms=job.hedge_max_ms)
    else:
        spec = HedgeDelay(mode="fixed", fixed_ms=setting)
    return hedge_delay_s(spec, window)


def _corrected(request: ChatRequest, problems: list[ToolCallProblem]) -> ChatRequest:
    """The original request plus the corrective message (the failed assistant turn is left out)."""
    return msgspec.structs.replace(request, messages=(*request.messages, corrective_message(problems)))


def _problem_text(problems: list[ToolCallProblem]) -> str:
    return "; ".join(f"{p.tool}: {p.kind} at {p.path}" for p in problems[:3])


_json = msgspec.json.Encoder()


def _detail_json(detail: dict[str, object]) -> str:
    return _json.encode(detail).decode()


def _with_prompt_cache(request: ChatRequest, job: JobConfig) -> ChatRequest:
    """The job's prompt-cache breakpoints added to what the request already marks."""
    if not job.prompt_cache:
        return request
    system = request.cache_system or "system" in job.prompt_cache
    tools = request.cache_tools or "tools" in job.prompt_cache
    if (system, tools) == (request.cache_system, request.cache_tools):
        return request
    return msgspec.structs.replace(request, cache_system=system, cache_tools=tools)

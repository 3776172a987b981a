"""One request served in the caller's own task: the router's plan, then cache, walk, verify, record.

The router actor decides — chain, hedge delay, hedge budget — in its mailbox; the request then
runs in the task that asked for it, so a token crosses one channel (from the provider's call to
the caller) and a request costs no task of its own. ``Serving`` owns the request's life around
the walk (plan, cache, judging, records); the walk itself and every attempt in it belong to the
``RequestRun``, which ``Serving`` drives through its methods and reads, never writes. Every
request that entered ends with exactly one request record and one record per attempt sent to
the ledger, whatever happened: success, fallback, hedge, total failure, the caller leaving,
cancellation, or the door closing under it.

Auxiliary calls (a classifier's label, reviews, agreement checks, an ensemble's judge) are runs
of their own but not requests of their own (``AuxCalls``): their attempts are this request's
attempts, with their purpose, and their cost is in this request's route and row. Ensemble
members are this request's attempts too (``run_ensemble``).

Durability. A request tells the ledger a ``BeginRecord`` as it enters, and again as each attempt
is sent (the count so far, the latest model), without waiting (a killed process leaves a begun
row, closed as ``interrupted`` with what it says at the next open). Its final event, or a
failure's error, is released only once its rows are committed (the ledger's next group commit):
an end the caller saw is on disk. The first token and the token path never wait on the disk; a
request its caller left or cancelled is recorded without waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from interlock._actor import ActorRef
from interlock._clock import Clock
from interlock._errors import AnswersRejected, ConsumerGone, InterlockError
from interlock._records import LedgerRecord
from interlock._streams import Reply
from interlock._types import ChatRequest, ChatResponse, RouteEvent, StreamEvent
from interlock.actors._ledger_actor import LedgerMsg, TraceContext, tell_records, wait_committed
from interlock.actors._router_actor import Learned, Plan, RouteRequest, RouterMsg, new_request_id
from interlock.actors.rails._cache import CacheRail, replay
from interlock.actors.rails._chain import AttemptRails
from interlock.actors.rails._lease import LeaseRail
from interlock.actors.rails._verify import VerifyRail
from interlock.actors.request._assemble import assemble
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._aux import AuxCalls
from interlock.actors.request._classify import classify
from interlock.actors.request._ensemble import ensemble_resolution, member_resolution, run_ensemble
from interlock.actors.request._held import holds_events, judge_pick, judged_walk
from interlock.actors.request._in_flight import InFlight
from interlock.actors.request._race import HedgePolicy
from interlock.actors.request._records import (
    DoorClosed,
    InternalFailure,
    ProcessEnding,
    attempt_begin_record,
    begin_record,
    cache_hit_record,
    cached_route,
    request_record,
    route_of,
)
from interlock.actors.request._run import Providers, RequestRun
from interlock.policies import _failover as failover
from interlock.policies._config import Config, JobConfig
from interlock.policies._routing import Resolution
from interlock.policies._verify import Verifier


@dataclass(frozen=True, kw_only=True)
class RequestRails:
    """The rails every request passes, folded once at start-up: response cache, attempt rails, verifiers.

    ``lease`` is the concurrency rail among the attempt rails, kept so the tree can renew its leases.
    """

    cache: CacheRail | None = None
    attempt: AttemptRails = field(default_factory=lambda: AttemptRails(()))
    lease: LeaseRail | None = None
    verifiers: dict[str, tuple[Verifier, ...]] = field(default_factory=dict)  # Python-side, per job


Events = AsyncGenerator[StreamEvent | RouteEvent]


@dataclass(frozen=True, kw_only=True)
class ServingContext:
    """What every request of one door shares: the actors it talks to, the rails, the clock."""

    config: Config
    router: ActorRef[RouterMsg]
    ledger: ActorRef[LedgerMsg]
    providers: Providers
    clock: Clock
    rails: RequestRails
    in_flight: InFlight


OnPlan = Callable[[str], None]  # hears the job's first choice once planned, before the first event


def serve(ctx: ServingContext, request: ChatRequest, on_plan: OnPlan | None = None) -> Events:
    """The events of ``request`` (then one ``RouteEvent``), served in the task that iterates them."""
    if not request.request_id:
        request = msgspec.structs.replace(request, request_id=new_request_id(ctx.clock.wall()))
    return Serving(ctx, request, on_plan).events()


class Serving:
    """One request's life; ``events`` is the stream the caller reads."""

    __slots__ = (
        "_abandoned", "_attempts", "_aux", "_aux_attempts", "_ctx", "_hedge", "_members", "_on_plan", "_recorded",
        "_run", "_started", "_timings", "_ts", "parked", "request",
    )  # fmt: skip

    def __init__(self, ctx: ServingContext, request: ChatRequest, on_plan: OnPlan | None = None) -> None:
        self._ctx = ctx
        self._on_plan = on_plan
        self.request = request
        self._run: RequestRun | None = None
        self._recorded = False
        self._abandoned = False
        self._attempts = 0  # attempts sent to a provider, over every run of this request (ensemble members too)
        self._aux = AuxCalls(self._side_run)
        self._aux_attempts: list[Attempt] = []  # numbered and given their purpose when recorded
        self._members: list[RequestRun] = []  # ensemble member runs not yet folded into the request's run
        self._hedge: HedgePolicy | None = None
        self._timings: tuple[float | None, float] = (None, 0.0)
        self.parked = False  # suspended at a yield: the caller holds the stream
        self._ts, self._started = ctx.clock.wall(), ctx.clock.now()

    async def events(self) -> AsyncGenerator[StreamEvent | RouteEvent]:
        """The caller's stream: begin, plan, cache, walk (or judged answer), records, then the route.

        The plain streamed walk is driven here by ``RequestRun.batch`` rather than through a helper
        generator: a token then passes through one generator, not two.
        """
        ctx = self._ctx
        clock = ctx.clock
        ctx.in_flight.add(self)
        try:
            # Never waited for, but asked to be committed at once (the next group commit, not the next
            # flush tick): a kill leaves a begun row for every request older than about one commit.
            await tell_records(ctx.ledger, (begin_record(self.request, self._ts),))
            request, plan, label, detail = await self._plan()
            resolution = plan.resolution
            if self._on_plan is not None:
                self._on_plan(failover.first_choice(resolution) or "")
            key = self._cache_key(request, resolution)
            hit = await self._cached(key) if key is not None else None
            if hit is not None:
                self._recorded = True
                committed = await tell_records(ctx.ledger, (cache_hit_record(request, resolution.job, self._ts, hit),))
                for replayed in replay(hit):
                    self.parked = True
                    yield replayed
                    self.parked = False
                await wait_committed(committed)
                yield RouteEvent(cached_route(hit, resolution.job))
                return
            self._hedge = plan.hedge
            run = self._run = RequestRun(
                request, plan.resolution, ctx.providers, clock, plan.hedge, ctx.rails.attempt,
                input_tokens=plan.tokens, route_label=label, route_detail=detail, started=self._started,
                on_attempt=self._attempt_sent,
            )  # fmt: skip
            answer: ChatResponse | None = None
            if holds_events(run, request, resolution.job in ctx.rails.verifiers):
                run, winner, answer, held = await self._answer_held(run, request)
                for event in held:
                    self.parked = True
                    yield event
                    self.parked = False
            else:
                events = await run.batch()
                while True:
                    for event in events:
                        self.parked = True
                        yield event
                        self.parked = False
                    found = run.winner
                    if found is not None:
                        break
                    events = await run.batch()
                winner = found
                await run.close()
                if key is not None:
                    answer = assemble(winner)
            self._learn(run, winner)
            timings, committed = await self._record(None)
            route = route_of(run, winner, timings, self._aux_attempts)
            if key is not None and answer is not None and (winner.verdict or "accept").startswith("accept"):
                assert ctx.rails.cache is not None
                # Stored with its route: a hit says which model made it, not an anonymous answer.
                cached = msgspec.structs.replace(answer, route=route)
                await ctx.rails.cache.store(key, cached, resolution.policy.cache_ttl_s or 0)
            await wait_committed(committed)  # the final event only once the rows are on disk
            yield RouteEvent(route)
        except InterlockError as exc:
            # Recorded, and committed, before the caller hears of it (a caller who left hears nothing).
            await self._end(exc, settle=not isinstance(exc, ConsumerGone))
            if isinstance(exc, AnswersRejected):
                self._route_rejected(exc)
            raise
        except Exception as exc:  # a bug (ours or a rail's): an internal error, never "cancelled"
            await self._end(InternalFailure(exc), settle=True)
            raise
        except (GeneratorExit, anyio.get_cancelled_exc_class()):  # the caller left, or the task was cancelled
            await self._end(ConsumerGone("cancelled"), settle=False)
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the process is going down
            await self._end(ProcessEnding(exc), settle=False)
            raise
        finally:
            ctx.in_flight.discard(self)

    async def _plan(self) -> tuple[ChatRequest, Plan, str | None, str]:
        """The router's plan (re-planned on the job classifier's pick), with the job's prompt-cache marks."""
        ctx = self._ctx
        plan: Plan = await ctx.router.ask(RouteRequest(self.request), timeout=None)
        request = plan.request  # marked "pii" when the router's scan found personal data in it
        label: str | None = None
        detail = ""
        if plan.resolution.policy.classifier is not None:
            chain, label, detail = await classify(request, plan.resolution, plan.tokens, self._aux.ask)
            if chain:
                plan = await ctx.router.ask(RouteRequest(request, chain), timeout=None)
        request = self.request = _with_prompt_cache(request, plan.resolution.policy)
        return request, plan, label, detail

    async def abandon(self) -> None:
        """The door is closing under this request: cancel its calls and record it now."""
        self._abandoned = True
        if self._recorded:
            return
        if self._run is not None:
            self._run.cancel_upstream()
        for member in self._members:
            member.cancel_upstream()
        self._aux.cancel_upstream()
        with anyio.CancelScope(shield=True):
            await self._record(DoorClosed())

    async def _end(self, error: InterlockError, *, settle: bool) -> None:
        """Close the run and record ``error``; with ``settle``, return only once the rows are committed."""
        with anyio.CancelScope(shield=True):
            try:
                if self._run is not None:
                    await self._run.close()
                if not self._recorded:
                    _, committed = await self._record(error)
                    if settle:
                        await wait_committed(committed)
            except InterlockError:
                if not self._abandoned:  # after the door closed, the actors are gone: it was recorded
                    raise

    # -- before the walk: the cache --------------------------------------------------------

    def _cache_key(self, request: ChatRequest, resolution: Resolution) -> str | None:
        cache = self._ctx.rails.cache
        if cache is None or not resolution.policy.cache_ttl_s or request.metadata.get("cache") == "off":
            return None
        return CacheRail.key(request, resolution.job)

    async def _cached(self, key: str) -> ChatResponse | None:
        """The cached answer, unless the caller asked for a refresh."""
        cache = self._ctx.rails.cache
        if cache is None or self.request.metadata.get("cache") == "refresh":
            return None
        return await cache.lookup(key)

    async def _side_run(self, request: ChatRequest, only: str | None = None) -> RequestRun:
        """A run of ``request`` beside the walk (an auxiliary call; with ``only``, that ensemble member alone).

        Planned by the router, through every attempt rail; a member's run counts against the
        request's own deadline and tells the begun row of its attempts.
        """
        ctx = self._ctx
        plan: Plan = await ctx.router.ask(RouteRequest(request), timeout=None)
        resolution = plan.resolution if only is None else member_resolution(plan.resolution, only)
        member = only is not None
        return RequestRun(
            request, resolution, ctx.providers, ctx.clock, plan.hedge, ctx.rails.attempt, input_tokens=plan.tokens,
            started=self._started if member else None, on_attempt=self._attempt_sent if member else None,
        )  # fmt: skip

    # -- answers held until judged: ensembles, verifiers, tool-call checks --------------------

    async def _answer_held(
        self, run: RequestRun, request: ChatRequest
    ) -> tuple[RequestRun, Attempt, ChatResponse, list[Any]]:
        """The judged answer, and the run that served it (an ensemble's: the run recording its members)."""
        ctx = self._ctx
        job = run.resolution.policy
        verifiers = (*job.verify, *ctx.rails.verifiers.get(run.resolution.job, ()))
        verify = VerifyRail(ctx.config, self._aux.ask)
        if job.ensemble is None:
            return (run, *await judged_walk(run, request, verify, verifiers))
        run, winner, answer, events = await run_ensemble(
            job.ensemble, request, self._member_run, self._aux.ask, self._combine
        )
        await judge_pick(run, winner, answer, request, verify, verifiers)
        return run, winner, answer, events

    async def _member_run(self, request: ChatRequest, name: str) -> RequestRun:
        """The ensemble member ``name``'s own run: that member alone, under the job's policy."""
        assert self._run is not None
        pinned = msgspec.structs.replace(request, model=name, model_class=None, task=self._run.resolution.job)
        member = await self._side_run(pinned, only=name)
        self._members.append(member)
        return member

    def _combine(self, chosen: Attempt | None) -> RequestRun:
        """The run that records an ensemble: every member's attempts, numbered in order; ``chosen`` serves."""
        ctx, main = self._ctx, self._run
        assert main is not None
        assert self._hedge is not None
        members, self._members = self._members, []
        resolution = ensemble_resolution(main.resolution, members, chosen)
        run = self._run = RequestRun(
            main.request, resolution, ctx.providers, ctx.clock, self._hedge, ctx.rails.attempt,
            route_label=main.route_label, route_detail=main.route_detail, started=self._started,
        )  # fmt: skip
        run.absorb(members)
        if chosen is not None:
            run.choose(chosen)
        return run

    def _route_rejected(self, error: AnswersRejected) -> None:
        """Give the rejected answer its route, so the caller sees who made it and what it cost."""
        run = self._run
        if run is not None and run.winner is not None and isinstance(error.answer, ChatResponse):
            route = route_of(run, run.winner, self._timings, self._aux_attempts)
            error.answer = msgspec.structs.replace(error.answer, route=route)

    # -- records and learning: as attempts are sent, after the answer ---------------------------

    def _attempt_sent(self, attempt: Attempt) -> None:
        """One more attempt went to a provider: the ledger's begun row says so (told, never waited for).

        No commit is asked for: the update rides the ledger's next commit or flush tick, so an
        attempt costs one enqueue. A full mailbox drops it (the row keeps its last count), never the request.
        """
        self._attempts += 1
        run = self._run
        task = (run.resolution.job if run is not None else self.request.task) or ""
        record = attempt_begin_record(self.request, self._ts, task, self._attempts, attempt)
        with contextlib.suppress(InterlockError):
            self._ctx.ledger.tell_nowait(record)

    def _learn(self, run: RequestRun, winner: Attempt) -> None:
        with contextlib.suppress(InterlockError):  # learning is best effort: never fail an answer for it
            self._ctx.router.tell_nowait(Learned(run.resolution.job, winner.candidate.name, winner.ttft, winner.hedge))

    async def _record(self, error: InterlockError | None) -> tuple[tuple[float | None, float], Reply[None]]:
        """Tell the ledger every attempt row and the one request row.

        Returns the request's (TTFT, TTLT) and the slot answered once those rows are committed.
        """
        self._recorded = True
        ctx, request, run = self._ctx, self.request, self._run
        clock, ts, started = ctx.clock, self._ts, self._started
        request_id = request.request_id
        traceparent = request.metadata.get("traceparent")
        if traceparent:
            await ctx.ledger.tell(TraceContext(request_id, traceparent))
        if self._members:  # cut inside an ensemble: its members' attempts are still this request's
            run = self._combine(None)
        attempts = run.attempts if run is not None else []
        task = (run.resolution.job if run is not None else request.task) or ""
        rows: list[LedgerRecord] = []
        now = clock.now()
        unfinished = "client_gone" if isinstance(error, ConsumerGone) else "cancelled"
        if run is not None:
            run.end_unfinished(unfinished)
        aux = self._aux_attempts = self._aux.attempts(len(attempts), unfinished)
        for attempt in (*attempts, *aux):
            rows.append(attempt.record(request, request_id, task, ts, started, now))
        winner = run.winner if run is not None else None
        elapsed = now - started
        ttft = None if winner is None or winner.ttft is None else winner.started - started + winner.ttft
        timings = self._timings = (ttft, elapsed)
        rows.append(request_record(request, request_id, task, ts, run, winner, error, timings, aux))
        return timings, await tell_records(ctx.ledger, tuple(rows))


def _with_prompt_cache(request: ChatRequest, job: JobConfig) -> ChatRequest:
    """The job's prompt-cache breakpoints added to what the request already marks."""
    if not job.prompt_cache:
        return request
    system = request.cache_system or "system" in job.prompt_cache
    tools = request.cache_tools or "tools" in job.prompt_cache
    if (system, tools) == (request.cache_system, request.cache_tools):
        return request
    return msgspec.structs.replace(request, cache_system=system, cache_tools=tools)

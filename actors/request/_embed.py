"""One embed request served in the caller's task: plan, cache, walk the chain, record.

An embed is planned by the router like a chat (``RouteRequest`` with ``operation="embed"``: only
embedding models are candidates, a chat model is skipped as ``capability``), over its routing
view: one user message per text (``routing_view``), which the rails read too. Then:

- the response cache, keyed over the texts, the job or model, the dimensions and the tenant
  (``policies._embed.embed_cache_key``), when the job has ``cache_ttl_s``;
- the walk: each candidate in turn through the attempt rails (budget reserved on the texts'
  byte bound, settled on the billed input tokens), then one ``EmbedCall`` to its provider actor
  (breaker, slots, cooldown). A failure falls back to the next candidate, after one
  same-provider retry where the failover policy allows it; an embed has no output to lose, so
  every failure is a failure before the first token. A provider that reports no usage (Gemini)
  is billed on the texts' estimate, marked ``usage_estimated``;
- the records: one request row and one row per attempt, with ``operation = "embed"``,
  committed before the answer (or the error) reaches the caller.

The ``RequestRun`` here only holds the attempts and errors for the records and the route (the
chat walk's helpers read it); its own read loop is never started.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import anyio
import msgspec

from interlock._embeddings import EmbedRequest, EmbedResponse
from interlock._errors import (
    ActorStopped,
    AdmissionRejected,
    BudgetExceeded,
    ConsumerGone,
    ErrorClass,
    InterlockError,
    ProviderError,
)
from interlock._records import LedgerRecord
from interlock._streams import EventStream, Reply
from interlock._types import ChatRequest, ChatResponse, Finish, Message, Usage
from interlock.actors._ledger_actor import tell_records, wait_committed
from interlock.actors._provider_actor import Cancel, EmbedCall
from interlock.actors._router_actor import Plan, RouteRequest, new_request_id
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._records import (
    DoorClosed,
    InternalFailure,
    attempt_begin_record,
    begin_record,
    cache_hit_record,
    cached_route,
    request_record,
    route_of,
)
from interlock.actors.request._run import RequestRun
from interlock.actors.request._serving import ServingContext
from interlock.adapters.providers._embed import Embedded
from interlock.policies._embed import embed_cache_key
from interlock.policies._failover import ends_chain, same_provider_retry, walk_failure
from interlock.policies._routing import Candidate
from interlock.policies._tokens import estimate_text_tokens

_call_ids = itertools.count(1 << 40)  # apart from the chat walk's ids: both reach the same provider actors


def routing_view(request: EmbedRequest) -> ChatRequest:
    """The chat-shaped view the router and the rails read: one user message per text.

    ``max_tokens = 1``: an embedding produces no tokens; the budget bounds the output by it and
    the context window gate leaves room for it (a window bounds each text alone: see the router).
    """
    return ChatRequest(
        messages=tuple(Message.text("user", text) for text in request.inputs), max_tokens=1,
        task=request.task, model=request.model, model_class=request.model_class, tenant=request.tenant,
        caller=request.caller, sensitivity=request.sensitivity, metadata=request.metadata,
        request_id=request.request_id,
    )  # fmt: skip


async def embed(ctx: ServingContext, request: EmbedRequest) -> EmbedResponse:
    """Serve ``request`` through the router, the cache, the attempt rails and the ledger."""
    if not request.request_id:
        request = msgspec.structs.replace(request, request_id=new_request_id(ctx.clock.wall()))
    return await Embedding(ctx, request).serve()


class Embedding:
    """One embed request's life; ``parked`` and ``abandon`` let a closing door cut it (``InFlight``)."""

    parked = False  # never held at a yield: the caller awaits one answer

    def __init__(self, ctx: ServingContext, request: EmbedRequest) -> None:
        self._ctx = ctx
        self.request = request
        self._view = routing_view(request)
        self._ts, self._started = ctx.clock.wall(), ctx.clock.now()
        self._run: RequestRun | None = None
        self._task = request.task or ""
        self._recorded = False
        self._calling: tuple[Attempt, int] | None = None  # the attempt at its provider, and its call id

    async def serve(self) -> EmbedResponse:
        """Plan, look up, walk and record; the answer or the error only once the rows are committed."""
        ctx = self._ctx
        ctx.in_flight.add(self)
        try:
            await tell_records(ctx.ledger, (begin_record(self._view, self._ts),))
            plan: Plan = await ctx.router.ask(RouteRequest(self._view, operation="embed"), timeout=None)
            self._task = plan.resolution.job
            self._view = plan.request  # marked "pii" when the router's scan found personal data in the texts
            key = self._cache_key(plan)
            hit = await self._cached(key)
            if hit is not None:
                return await self._replay(hit)
            run = self._run = RequestRun(
                self._view, plan.resolution, ctx.providers, ctx.clock, plan.hedge, ctx.rails.attempt,
                input_tokens=plan.tokens, started=self._started,
            )  # fmt: skip
            winner, embedded = await self._walk(run, plan)
            timings, committed = await self._record(None)
            usage = winner.usage if not winner.usage_estimated else None
            response = EmbedResponse(vectors=embedded.vectors, usage=usage, route=route_of(run, winner, timings))
            if key is not None and ctx.rails.cache is not None:
                await ctx.rails.cache.store_vectors(key, response, plan.resolution.policy.cache_ttl_s or 0)
            await wait_committed(committed)
            return response
        except InterlockError as exc:
            await self._end(exc, settle=not isinstance(exc, ConsumerGone))
            raise
        except Exception as exc:  # a bug: recorded as internal, raised as it is
            await self._end(InternalFailure(exc), settle=True)
            raise
        except BaseException:  # cancelled, or the process is going down: recorded without waiting
            await self._end(ConsumerGone("cancelled"), settle=False)
            raise
        finally:
            ctx.in_flight.discard(self)

    async def abandon(self) -> None:
        """The door is closing under this request: cancel its call and record it now."""
        self._cancel_upstream()
        if not self._recorded:
            with anyio.CancelScope(shield=True):
                await self._record(DoorClosed())

    # -- the cache -------------------------------------------------------------------------

    def _cache_key(self, plan: Plan) -> str | None:
        policy = plan.resolution.policy
        if self._ctx.rails.cache is None or not policy.cache_ttl_s or self.request.metadata.get("cache") == "off":
            return None
        return embed_cache_key(self.request, plan.resolution.job)

    async def _cached(self, key: str | None) -> EmbedResponse | None:
        cache = self._ctx.rails.cache
        if key is None or cache is None or self.request.metadata.get("cache") == "refresh":
            return None
        return await cache.lookup_vectors(key)

    async def _replay(self, hit: EmbedResponse) -> EmbedResponse:
        """A hit: its one row (who made the vectors, flagged a hit, nothing spent), then the vectors."""
        self._recorded = True
        made = ChatResponse(content="", route=hit.route)  # the hit records read only the stored route
        row = msgspec.structs.replace(cache_hit_record(self._view, self._task, self._ts, made), operation="embed")
        committed = await tell_records(self._ctx.ledger, (row,))
        await wait_committed(committed)
        return EmbedResponse(vectors=hit.vectors, usage=Usage(), route=cached_route(made, self._task))

    # -- the walk --------------------------------------------------------------------------

    async def _walk(self, run: RequestRun, plan: Plan) -> tuple[Attempt, Embedded]:
        """Each candidate in turn until one answers; the walk's failure (``walk_failure``) when none does."""
        clock = self._ctx.clock
        deadline = self._started + run.policy.total_timeout_ms / 1000.0
        pending = list(run.resolution.candidates)
        retried: set[str] = set()
        while pending and clock.now() < deadline:
            candidate = pending.pop(0)
            attempt = Attempt(candidate, len(run.attempts) + 1, next(_call_ids), clock.now(), hedge=False)
            run.attempts.append(attempt)
            try:
                return attempt, await self._attempt(attempt, plan.tokens, deadline)
            except (AdmissionRejected, BudgetExceeded, ActorStopped) as exc:
                self._failed(run, attempt, exc)
            except InterlockError as exc:
                self._failed(run, attempt, exc)
                wait = self._retry_in(exc, candidate, retried, deadline)
                if wait is not None:
                    await clock.sleep(wait)  # honours the provider's Retry-After
                    pending.insert(0, candidate)
                elif ends_chain(exc.kind, admitted=True):
                    break  # bad request, auth, content policy: no other model would do better
        raise walk_failure(run.resolution, run.errors, out_of_time=clock.now() >= deadline, late_first=None)

    def _retry_in(
        self, error: InterlockError, candidate: Candidate, retried: set[str], deadline: float
    ) -> float | None:
        if not isinstance(error, ProviderError) or candidate.name in retried:
            return None
        wait = same_provider_retry(error.kind, error.retry_after, deadline - self._ctx.clock.now())
        if wait is not None:
            retried.add(candidate.name)
        return wait

    def _failed(self, run: RequestRun, attempt: Attempt, error: InterlockError) -> None:
        attempt.failed(error, self._ctx.clock.now())
        run.errors.append((attempt.candidate.name, error))

    async def _attempt(self, attempt: Attempt, tokens: int, deadline: float) -> Embedded:
        """One candidate through the attempt rails and its provider; the rails are left, settled, whatever happens."""
        ctx, candidate = self._ctx, attempt.candidate
        ref = ctx.providers(candidate.provider)
        if ref is None:
            raise AdmissionRejected(candidate.provider, "disabled")
        rails = ctx.rails.attempt
        if rails.rails:
            await rails.enter(self._view, attempt, tokens)
        try:
            self._told(attempt)
            call = EmbedCall(self.request.inputs, candidate.model.id, self.request.dimensions, attempt.call_id)
            self._calling = (attempt, attempt.call_id)
            try:
                embedded = await self._answer(await ref.ask_stream(call), candidate, deadline)
            except BaseException:
                self._cancel_upstream()  # a deadline passed or the caller left: the provider drops the call
                raise
            finally:
                self._calling = None
            self._check_size(candidate, embedded)
            self._observe(attempt, embedded)
            return embedded
        finally:
            if attempt.holds:
                with anyio.CancelScope(shield=True):
                    await rails.leave(attempt)

    async def _answer(self, stream: EventStream[Any], candidate: Candidate, deadline: float) -> Embedded:
        """The call's one event, before the request's deadline (a ``timeout`` after it)."""
        try:
            event = await stream.next_before(self._ctx.clock, deadline)
        except StopAsyncIteration:
            event = None
        finally:
            stream.close_now()
        if not isinstance(event, Embedded):
            timed_out = self._ctx.clock.now() >= deadline
            kind, detail = (ErrorClass.TIMEOUT, "no answer within the job's deadline") if timed_out else (
                ErrorClass.INTERNAL, "the provider's stream ended without an answer")  # fmt: skip
            raise ProviderError(kind, candidate.provider, model=candidate.model.id, detail=detail)
        return event

    def _check_size(self, candidate: Candidate, embedded: Embedded) -> None:
        """Vectors of another length than asked for (or configured) would corrupt the caller's index."""
        want = self.request.dimensions or candidate.model.dimensions
        wrong = next((len(v) for v in embedded.vectors if len(v) != want), None)
        if wrong is not None:
            detail = f"answered {wrong}-long vectors, expected {want} (models.{candidate.name}.dimensions)"
            raise ProviderError(ErrorClass.SERVER_ERROR, candidate.provider, model=candidate.model.id, detail=detail)

    def _observe(self, attempt: Attempt, embedded: Embedded) -> None:
        """The answer's usage (or the texts' estimate, marked so) and its end, on the attempt."""
        if embedded.usage is not None:
            attempt.usage, attempt.usage_reported = embedded.usage, True
        else:
            attempt.usage = Usage(input_tokens=sum(estimate_text_tokens(t) for t in self.request.inputs))
            attempt.usage_estimated = True
        attempt.observe(Finish("stop", served_model=embedded.served_model), self._ctx.clock)

    def _told(self, attempt: Attempt) -> None:
        """The begun row learns of the attempt (told, never waited for; a full mailbox drops the update)."""
        record = attempt_begin_record(self._view, self._ts, self._task, attempt.number, attempt)
        with contextlib.suppress(InterlockError):
            self._ctx.ledger.tell_nowait(record)

    def _cancel_upstream(self) -> None:
        calling = self._calling
        if calling is None:
            return
        attempt, call_id = calling
        ref = self._ctx.providers(attempt.candidate.provider)
        if ref is not None:
            with contextlib.suppress(InterlockError):
                ref.tell_nowait(Cancel(call_id))

    # -- records ---------------------------------------------------------------------------

    async def _end(self, error: InterlockError, *, settle: bool) -> None:
        with anyio.CancelScope(shield=True):
            if self._recorded:
                return
            _, committed = await self._record(error)
            if settle:
                await wait_committed(committed)

    async def _record(self, error: InterlockError | None) -> tuple[tuple[float | None, float], Reply[None]]:
        """Tell the ledger every attempt row and the one request row, each with ``operation = "embed"``."""
        self._recorded = True
        ctx, view, run = self._ctx, self._view, self._run
        now = ctx.clock.now()
        rows: list[LedgerRecord] = []
        winner = None
        if run is not None:
            run.end_unfinished("client_gone" if isinstance(error, ConsumerGone) else "cancelled")
            winner = next((a for a in run.attempts if a.finish is not None), None)
            for attempt in run.attempts:
                row = attempt.record(view, view.request_id, self._task, self._ts, self._started, now)
                rows.append(msgspec.structs.replace(row, operation="embed"))
        ttft = None if winner is None or winner.ttft is None else winner.started - self._started + winner.ttft
        timings = (ttft, now - self._started)
        request_row = request_record(view, view.request_id, self._task, self._ts, run, winner, error, timings)
        rows.append(msgspec.structs.replace(request_row, operation="embed"))
        return timings, await tell_records(ctx.ledger, tuple(rows))

"""One request's walk along its chain: fallback, hedging, stall deadlines, mid-stream resume.

The run is a plain object driven by the task that serves the request: the caller's own task for
a streamed answer (``Serving``), so an event crosses one channel, from the provider's call task
to the caller. Failover happens only before the first token, on the causes in ``FAILOVER``;
after it, every read waits with the job's stall deadlines, and the job's ``mid_stream`` policy
resumes on the next candidate (with the partial answer as context) or fails with the partial
answer attached.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from interlock._actor import ActorRef
from interlock._clock import Clock
from interlock._errors import (
    ActorStopped,
    AdmissionRejected,
    BudgetExceeded,
    ChainExhausted,
    ErrorClass,
    InterlockError,
    MidStreamError,
    ProviderError,
)
from interlock._types import ChatRequest, Finish, Message, StreamEvent
from interlock.actors._provider_actor import Call, Cancel
from interlock.actors.rails._chain import AttemptRails
from interlock.actors.request._attempt import Attempt
from interlock.policies._routing import Candidate, Resolution
from interlock.policies._tokens import estimate_input_tokens

# Causes that move a request to the next candidate before its first token.
FAILOVER = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECT,
        ErrorClass.INTERNAL,  # a crashed provider actor
        ErrorClass.CONTEXT_LENGTH,  # a longer-context candidate may still fit
    }
)

_call_ids = itertools.count(1)


class EventSinkLike(Protocol):
    """Where ``RequestRun.run`` puts events: a ``BufferSink``, or an ``EventSink``."""

    def send_nowait(self, event: Any) -> bool: ...

    async def send(self, event: Any) -> None: ...


class HedgePolicy:
    """What the run may do about a late first token: the delay, and whether the budget allows a hedge."""

    def __init__(self, delay_s: float | None, max_hedges: int, spend: Callable[[], Awaitable[bool]]) -> None:
        self.delay_s = delay_s
        self.max_hedges = max_hedges
        self.spend = spend


class RequestRun:
    """The walk of one request; ``attempts`` holds every attempt made, in order."""

    def __init__(
        self,
        request: ChatRequest,
        resolution: Resolution,
        providers: Callable[[str], ActorRef[Any] | None],
        clock: Clock,
        hedge: HedgePolicy,
        rails: AttemptRails | None = None,
        input_tokens: int | None = None,
    ) -> None:
        self.request = request
        self._rails = rails or AttemptRails(())
        self._input_tokens = estimate_input_tokens(request) if input_tokens is None else input_tokens
        self._entered: list[Attempt] = []
        self.resolution = resolution
        self.policy = resolution.policy
        self._gap = self.policy.inter_token_timeout_ms / 1000.0
        self._total = self.policy.total_timeout_ms / 1000.0
        self._providers = providers
        self._clock = clock
        self._hedge = hedge
        self._pending = list(resolution.candidates)
        self._prefix = ""
        self.attempts: list[Attempt] = []
        self.errors: list[tuple[str, InterlockError]] = []
        self.winner: Attempt | None = None
        self.hedged = False
        self.resumed = False
        self.escalated = False
        self.route_label: str | None = None
        self.route_detail = ""

    async def run(self, sink: EventSinkLike) -> Attempt:
        """Serve the whole answer into ``sink``; returns the attempt that finished it."""
        try:
            attempt, event = await self.start()
            clock = self._clock
            while True:
                attempt.observe(event, clock)
                if not sink.send_nowait(event):
                    await sink.send(event)
                if type(event) is Finish:
                    self.winner = attempt
                    return attempt
                try:
                    event = await self.next_event(attempt)
                except (InterlockError, Stalled) as exc:
                    attempt, event = await self.recover(attempt, exc)
        finally:
            await self.close()

    async def next_event(self, attempt: Attempt) -> StreamEvent:
        """The attempt's next event, within its stall deadlines (``Stalled`` when one passes).

        A buffered event is taken at once. Only a read that must wait reads the clock: the stream
        is stalled when it stays quiet for the inter-token deadline from then, or when the
        attempt runs past its total deadline.
        """
        stream = attempt.stream
        assert stream is not None
        event: StreamEvent | None = stream.take_nowait()
        if event is not None:
            return event
        clock = self._clock
        total = attempt.started + self._total
        try:
            event = await stream.next_before(clock, min(clock.now() + self._gap, total))
        except StopAsyncIteration:
            raise MidStreamError(
                ErrorClass.SERVER_ERROR, attempt.candidate.provider, partial=attempt.partial,
                model=attempt.candidate.name, detail="stream ended without a finish",
            ) from None
        if event is None:
            raise Stalled("total" if clock.now() >= total else "inter_token")
        return event

    async def recover(self, attempt: Attempt, exc: InterlockError | Stalled) -> tuple[Attempt, StreamEvent]:
        """``attempt`` failed mid-stream: resume on the next candidate, or raise ``MidStreamError``."""
        if isinstance(exc, Stalled):
            self._cancel_losers({attempt}, "stalled")
            attempt.cancel_reason = None  # it failed (a timeout); it was not cancelled for another
            error: InterlockError = exc.as_error(attempt)
        else:
            error = exc
        attempt.error = error
        attempt.ended = self._clock.now()
        self.errors.append((attempt.candidate.name, error))
        self._prefix += attempt.partial
        if self.policy.mid_stream != "resume" or not self._pending:
            raise MidStreamError(
                error.kind, attempt.candidate.provider, partial=self._prefix, model=attempt.candidate.name,
                detail=f"mid-stream failure ({self.policy.mid_stream})",
            ) from exc
        self.resumed = True
        self.request = _resumed(self.request, attempt.partial)
        return await self.start()

    async def close(self) -> None:
        """End the run: unfinished attempts are cancelled upstream, streams closed, rails left."""
        for attempt in self.attempts:
            stream = attempt.stream
            if stream is None:
                continue
            if attempt.finish is None and attempt.error is None:
                self._cancel_upstream(attempt)  # the caller left (or we were cancelled) mid-call
            stream.close_now()
            attempt.stream = None
        if self._entered:
            with anyio.CancelScope(shield=True):
                while self._entered:
                    await self._rails.leave(self._entered.pop())

    def cancel_upstream(self) -> None:
        """Cancel every unfinished attempt at its provider now (the door is closing under the run)."""
        for attempt in self.attempts:
            if attempt.stream is not None and attempt.finish is None and attempt.error is None:
                self._cancel_upstream(attempt)

    def retry_on(self, candidate: Candidate, request: ChatRequest) -> None:
        """Queue one more attempt on ``candidate`` with ``request`` (a corrected tool call), first in line."""
        self.request = request
        self._pending.insert(0, candidate)

    @property
    def has_pending(self) -> bool:
        """True while untried candidates remain (a cascade may escalate to them)."""
        return bool(self._pending)

    # -- before the first token: fallback and hedging ------------------------------------------

    async def start(self) -> tuple[Attempt, StreamEvent]:
        """The first event of the next answering candidate, with fallback and hedging before it."""
        if self._hedge.delay_s is None or self._hedge.max_hedges == 0:
            return await self._first_token_in_turn()
        send, recv = anyio.create_memory_object_stream[tuple[str, Attempt | None, Any]](16)
        async with send, recv, anyio.create_task_group() as tg:
            active: set[Attempt] = set()
            hedges = 0
            primary = await self._launch(tg, send, hedge=False)
            if primary is not None:
                active.add(primary)
            timer = self._arm(tg, send, primary)
            while active:
                what, attempt, value = await recv.receive()
                if what == "first":
                    assert attempt is not None
                    self._cancel_losers(active - {attempt}, "hedge_lost")
                    tg.cancel_scope.cancel()
                    return attempt, value
                if what == "fail":
                    assert attempt is not None
                    active.discard(attempt)
                    self._fail(attempt, value)
                    if not active:
                        timer.cancel()
                        nxt = await self._launch(tg, send, hedge=False)
                        if nxt is not None:
                            active.add(nxt)
                            timer = self._arm(tg, send, nxt)
                elif what == "hedge" and hedges < self._hedge.max_hedges and self._pending:
                    if not await self._hedge.spend():
                        continue
                    hedge = await self._launch(tg, send, hedge=True)
                    if hedge is not None:
                        hedges += 1
                        self.hedged = True
                        active.add(hedge)
            tg.cancel_scope.cancel()
        self._exhausted()

    async def _first_token_in_turn(self) -> tuple[Attempt, StreamEvent]:
        """Without hedging: one candidate at a time, its first event read in this task (no helpers)."""
        while True:
            attempt = await self._start(hedge=False)
            if attempt is None:
                self._exhausted()
            assert attempt.stream is not None
            try:
                return attempt, await attempt.stream.__anext__()
            except StopAsyncIteration:
                self._fail(attempt, _empty(attempt))
            except InterlockError as exc:
                self._fail(attempt, exc)

    def _exhausted(self) -> NoReturn:
        over_budget = [e for _, e in self.errors if isinstance(e, BudgetExceeded)]
        if over_budget and len(over_budget) == len(self.errors):
            raise over_budget[0]  # every candidate was refused for money: say which budget is full
        raise ChainExhausted(self.resolution.job or "(pinned)", self.errors)

    async def _launch(
        self, tg: TaskGroup, send: MemoryObjectSendStream[tuple[str, Attempt | None, Any]], *, hedge: bool
    ) -> Attempt | None:
        """Start the next answering candidate and a task that reads its first event."""
        attempt = await self._start(hedge=hedge)
        if attempt is not None:
            tg.start_soon(self._read_first, attempt, send.clone())
        return attempt

    async def _start(self, *, hedge: bool) -> Attempt | None:
        """Start the next candidate whose provider answers; admission refusals are recorded and skipped."""
        while self._pending:
            candidate = self._pending.pop(0)
            attempt = Attempt(candidate, len(self.attempts) + 1, next(_call_ids), self._clock.now(), hedge=hedge)
            self.attempts.append(attempt)
            ref = self._providers(candidate.provider)
            if ref is None:
                self._fail(attempt, AdmissionRejected(candidate.provider, "disabled"))
                continue
            try:
                if self._rails.rails:
                    await self._rails.enter(self.request, attempt, self._input_tokens)
            except (AdmissionRejected, BudgetExceeded) as exc:
                self._fail(attempt, exc)
                continue
            if attempt.holds:
                self._entered.append(attempt)  # a rail only undoes what it holds: nothing held, nothing to leave
            try:
                call = Call(self.request, candidate.model.id, call_id=attempt.call_id)
                attempt.stream = await ref.ask_stream(call)
            except ActorStopped as exc:
                self._fail(attempt, exc)
                continue
            return attempt
        return None

    async def _read_first(
        self, attempt: Attempt, send: MemoryObjectSendStream[tuple[str, Attempt | None, Any]]
    ) -> None:
        assert attempt.stream is not None
        async with send:
            try:
                event = await attempt.stream.__anext__()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # this attempt lost the race and its stream was closed under it
            except StopAsyncIteration:
                await send.send(("fail", attempt, _empty(attempt)))
            except InterlockError as exc:
                await send.send(("fail", attempt, exc))
            else:
                await send.send(("first", attempt, event))

    def _arm(
        self, tg: TaskGroup, send: MemoryObjectSendStream[tuple[str, Attempt | None, Any]], primary: Attempt | None
    ) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        if primary is not None and self._hedge.delay_s is not None and self._hedge.max_hedges > 0:
            tg.start_soon(self._hedge_timer, scope, send.clone(), self._hedge.delay_s)
        return scope

    async def _hedge_timer(
        self, scope: anyio.CancelScope, send: MemoryObjectSendStream[tuple[str, Attempt | None, Any]], delay: float
    ) -> None:
        async with send:
            with scope:
                for _ in range(self._hedge.max_hedges):
                    await self._clock.sleep(delay)
                    await send.send(("hedge", None, None))

    def _fail(self, attempt: Attempt, error: InterlockError) -> None:
        attempt.error = error
        attempt.ended = self._clock.now()
        self.errors.append((attempt.candidate.name, error))
        if error.kind not in FAILOVER and not isinstance(error, (AdmissionRejected, ActorStopped, BudgetExceeded)):
            self._pending.clear()  # bad_request, auth, content policy: no other model will do better

    def _cancel_losers(self, losers: set[Attempt], reason: str) -> None:
        for loser in losers:
            loser.cancel_reason = reason
            self._cancel_upstream(loser)
            if loser.stream is not None:
                loser.stream.close_now()

    def _cancel_upstream(self, attempt: Attempt) -> None:
        """Tell the provider to drop the call now: its connection closes, its slot frees."""
        if attempt.ended is None:
            attempt.ended = self._clock.now()
        ref = self._providers(attempt.candidate.provider)
        if ref is not None:
            with contextlib.suppress(InterlockError):
                ref.tell_nowait(Cancel(attempt.call_id))

class Stalled(Exception):
    """The stream went quiet past its inter-token deadline, or ran past its total deadline."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which

    def as_error(self, attempt: Attempt) -> MidStreamError:
        return MidStreamError(
            ErrorClass.TIMEOUT, attempt.candidate.provider, partial=attempt.partial, model=attempt.candidate.name,
            detail=f"{self.which} deadline passed",
        )


def _empty(attempt: Attempt) -> ProviderError:
    return ProviderError(
        ErrorClass.SERVER_ERROR, attempt.candidate.provider, model=attempt.candidate.name, detail="empty stream"
    )


def _resumed(request: ChatRequest, partial: str) -> ChatRequest:
    """The request again, with the partial answer as context and an instruction to continue it."""
    if not partial:
        return request
    extra = (
        Message.text("assistant", partial),
        Message.text("user", "Continue exactly where your previous answer stopped; do not repeat any of it."),
    )
    return msgspec.structs.replace(request, messages=request.messages + extra)


def candidate_label(candidate: Candidate) -> str:
    """``model@provider`` for logs and reasons."""
    return f"{candidate.name}@{candidate.provider}"

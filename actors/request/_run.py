"""One request's walk along its chain: fallback, hedging, stall deadlines, mid-stream resume.

The run is the one owner of a request's walk and of every attempt in it: nothing else writes
its fields or an attempt's. It is driven by the task that serves the request — the caller's own
task for a streamed answer — through ``batch``, the one read loop: each call returns the events
that arrived (observed into their attempt), so an event crosses one channel, from the
provider's call task to the caller. Failover happens only before the first token, by the rules
in ``interlock.policies._failover``; after it, every read waits with the job's stall deadlines,
and the job's ``mid_stream`` policy resumes on the next candidate (with the partial answer as
context) or fails with the partial answer attached.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import NoReturn

import anyio

from interlock._actor import ActorRef
from interlock._clock import Clock
from interlock._errors import (
    ActorStopped,
    AdmissionRejected,
    BudgetExceeded,
    ErrorClass,
    InterlockError,
    ProviderError,
)
from interlock._types import ChatRequest, Finish, StreamEvent
from interlock.actors._provider_actor import Call, Cancel, ProviderMsg
from interlock.actors.rails._chain import AttemptRails
from interlock.actors.request._assemble import EventSinkLike
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._race import HedgePolicy, empty_stream_error, late_first_token, race_first_token
from interlock.actors.request._resume import (
    Diverged,
    Stalled,
    continuation,
    ended_early,
    no_resume,
    not_resumed,
    reconcile,
)
from interlock.actors.request._unreported import bill_unreported
from interlock.policies._failover import ends_chain, same_provider_retry, walk_failure
from interlock.policies._routing import Candidate, Resolution
from interlock.policies._tokens import estimate_input_tokens

_call_ids = itertools.count(1)

Providers = Callable[[str], "ActorRef[ProviderMsg] | None"]


class RequestRun:
    """The walk of one request; ``attempts`` holds every attempt made, in order, ``winner`` the one that finished."""

    def __init__(
        self,
        request: ChatRequest,
        resolution: Resolution,
        providers: Providers,
        clock: Clock,
        hedge: HedgePolicy,
        rails: AttemptRails | None = None,
        input_tokens: int | None = None,
        *,
        route_label: str | None = None,
        route_detail: str = "",
        started: float | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.request = request
        self._on_attempt = on_attempt  # told of each attempt sent to a provider (the ledger's begun row)
        self._rails = rails or AttemptRails(())
        self._input_tokens = estimate_input_tokens(request) if input_tokens is None else input_tokens
        self._entered: list[Attempt] = []
        self.resolution = resolution
        self.policy = resolution.policy
        self._gap = self.policy.inter_token_timeout_ms / 1000.0
        first = self.policy.first_token_timeout_ms
        self._first_gap = first / 1000.0 if first is not None else None
        # The whole request's deadline, from its entry (``started``): every attempt and resume.
        self._deadline = (clock.now() if started is None else started) + self.policy.total_timeout_ms / 1000.0
        self._late_first: str | None = None  # which deadline the last first-token wait ran out on
        self._providers = providers
        self._clock = clock
        self._hedge = hedge
        self._pending = list(resolution.candidates)
        self._prefix = ""  # the text the caller has been given, over every attempt
        self._no_prefill: set[str] = set()  # candidates that refused a prefill: they restart and reconcile
        self._retried: set[str] = set()  # candidates already retried once on their own provider
        self._not_before: dict[str, float] = {}  # a queued retry's earliest start (its Retry-After)
        self._current: Attempt | None = None  # the attempt being read, once one has a first event
        self.attempts: list[Attempt] = []
        self.errors: list[tuple[str, InterlockError]] = []
        self.winner: Attempt | None = None
        self.hedged = False
        self.resumed = False
        self.escalated = False
        self.route_label = route_label
        self.route_detail = route_detail

    # -- the read loop -------------------------------------------------------------------------

    async def batch(self) -> list[StreamEvent]:
        """The next events of the answer, observed into their attempt; ends with the ``Finish``.

        The first call starts the walk (fallback and hedging before the first token); each later
        call takes what arrived meanwhile without a wait, or waits for one event within the stall
        deadlines; a mid-stream failure resumes on the next candidate or raises. Once the batch
        holds the ``Finish``, ``winner`` is set and the walk is over.
        """
        attempt = self._current
        if attempt is None:
            attempt, first = await self.start()
            events = [first]
        else:
            stream = attempt.stream
            assert stream is not None
            events = stream.take_buffered()
            if not events:
                try:
                    events = [await self.next_event(attempt)]
                except (InterlockError, Stalled) as exc:
                    attempt, first = await self.recover(attempt, exc)
                    events = [first]
        self._current = attempt
        if attempt.expect:
            events = self._reconciled(attempt, events)
        clock = self._clock
        for index, event in enumerate(events):
            attempt.observe(event, clock)
            if type(event) is Finish:
                self.winner = attempt
                return events if index == len(events) - 1 else events[: index + 1]
        return events

    def _reconciled(self, attempt: Attempt, events: list[StreamEvent]) -> list[StreamEvent]:
        """A restarted answer's events past the text the caller has; a divergence ends the request."""
        try:
            events, attempt.expect = reconcile(events, attempt.expect)
        except Diverged as diverged:
            attempt.expect = diverged.left
            error = diverged.as_error(attempt, self._prefix)
            self._cancel_upstream(attempt)
            attempt.error = error
            self.errors.append((attempt.candidate.name, error))
            raise error from None
        return events

    async def run(self, sink: EventSinkLike) -> Attempt:
        """Serve the whole answer into ``sink``; returns the attempt that finished it."""
        try:
            while True:
                for event in await self.batch():
                    if not sink.send_nowait(event):
                        await sink.send(event)
                winner = self.winner
                if winner is not None:
                    return winner
        finally:
            await self.close()

    async def next_event(self, attempt: Attempt) -> StreamEvent:
        """The attempt's next event, within its stall deadlines (``Stalled`` when one passes).

        Only a read that must wait reads the clock: the stream is stalled when it stays quiet for
        the inter-token deadline from then, or when the attempt runs past its total deadline.
        """
        stream = attempt.stream
        assert stream is not None
        clock = self._clock
        total = self._deadline
        try:
            event = await stream.next_before(clock, min(clock.now() + self._gap, total))
        except StopAsyncIteration:
            raise ended_early(attempt) from None
        if event is None:
            raise Stalled("total" if clock.now() >= total else "inter_token")
        return event

    async def recover(self, attempt: Attempt, exc: InterlockError | Stalled) -> tuple[Attempt, StreamEvent]:
        """``attempt`` failed mid-stream: resume on the next candidate, or raise ``MidStreamError``."""
        if isinstance(exc, Stalled):
            self.cancel_losers({attempt}, "stalled")
            attempt.cancel_reason = None  # it failed (a timeout); it was not cancelled for another
            error: InterlockError = exc.as_error(attempt)
        else:
            error = exc
        attempt.failed(error, self._clock.now())
        self.errors.append((attempt.candidate.name, error))
        self._prefix += attempt.partial
        why = no_resume(self.policy.mid_stream, bool(self._pending), self._clock.now() >= self._deadline)
        if why is not None:
            raise not_resumed(error, attempt, self._prefix, why) from exc
        self.resumed = True  # the next attempt continues (prefill) or restarts and reconciles
        return await self.start()

    async def close(self) -> None:
        """End the run: unfinished attempts are cancelled upstream, delivered text billed, rails left."""
        bill_unreported(self.request, self.attempts)
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

    def end_unfinished(self, reason: str) -> None:
        """Mark every attempt that neither finished nor failed as cancelled for ``reason``."""
        for attempt in self.attempts:
            if attempt.error is None and attempt.finish is None and attempt.cancel_reason is None:
                attempt.cancel_reason = reason

    # -- judging a held answer: tool-call retries, verdicts, cascades, ensembles ---------------

    def judged(self, attempt: Attempt, verdict: str | None) -> None:
        """Record the verdict on ``attempt``'s answer (None: nothing judged it)."""
        attempt.verdict = verdict

    def retry_on(self, candidate: Candidate, request: ChatRequest) -> None:
        """Queue one more attempt on ``candidate`` with ``request`` (a corrected tool call), first in line."""
        self.request = request
        self._pending.insert(0, candidate)
        self._reset()

    def escalate(self) -> bool:
        """Move past a rejected answer to the next candidate (a cascade); False when none is left."""
        if not self._pending:
            return False
        self.escalated = True
        self._reset()
        return True

    def absorb(self, members: Iterable[RequestRun]) -> None:
        """Take every member run's attempts and errors as this run's (an ensemble), numbered in order."""
        for member in members:
            self.attempts.extend(member.attempts)
            self.errors.extend(member.errors)
        for number, attempt in enumerate(self.attempts, 1):
            attempt.number = number

    def choose(self, attempt: Attempt) -> None:
        """``attempt`` (a member's winner) serves the request: an ensemble's pick."""
        self.winner = attempt

    def _exhausted(self) -> NoReturn:
        """Raise the walk's failure: a deadline run out, the full budget if money refused all, else the chain's end."""
        out_of_time = self._clock.now() >= self._deadline
        raise walk_failure(self.resolution, self.errors, out_of_time=out_of_time, late_first=self._late_first)

    @property
    def has_pending(self) -> bool:
        """True while untried candidates remain (a hedge or an escalation may go to them)."""
        return bool(self._pending)

    def _reset(self) -> None:
        """A finished walk goes on: the next ``batch`` starts the next candidate."""
        self._current = None
        self.winner = None

    # -- before the first token: fallback and hedging ------------------------------------------

    async def start(self) -> tuple[Attempt, StreamEvent]:
        """The first event of the next answering candidate, with fallback and hedging before it."""
        if self._hedge.delay_s is None or self._hedge.max_hedges == 0:
            return await self._first_token_in_turn()
        won, hedges = await race_first_token(self, self._hedge, self._clock)
        if hedges:
            self.hedged = True
        if won is None:
            self._exhausted()
        return won

    async def _first_token_in_turn(self) -> tuple[Attempt, StreamEvent]:
        """Without hedging: one candidate at a time, its first event read in this task (no helpers)."""
        while True:
            attempt = await self.start_next(hedge=False)
            if attempt is None:
                self._exhausted()
            try:
                return attempt, await self.read_first(attempt)
            except InterlockError as exc:
                self.fail(attempt, exc)

    async def read_first(self, attempt: Attempt) -> StreamEvent:
        """The attempt's first event within its first-token and total deadlines, or its failure raised.

        A deadline that runs out cancels the call upstream and fails the attempt with a ``timeout``
        naming which deadline it was.
        """
        stream = attempt.stream
        assert stream is not None
        deadline = self._deadline
        if self._first_gap is not None:
            deadline = min(deadline, attempt.started + self._first_gap)
        try:
            event = await stream.next_before(self._clock, deadline)
        except StopAsyncIteration:
            raise empty_stream_error(attempt) from None
        if event is not None:
            self._late_first = None
            return event
        which = "total" if self._clock.now() >= self._deadline else "first_token"
        self._late_first = which
        self._cancel_upstream(attempt)
        stream.close_now()
        limit = self.policy.total_timeout_ms if which == "total" else self.policy.first_token_timeout_ms
        raise late_first_token(attempt, which, limit)

    async def start_next(self, *, hedge: bool) -> Attempt | None:
        """Start the next candidate whose provider answers; admission refusals are recorded and skipped."""
        while self._pending and self._clock.now() < self._deadline:
            candidate = self._pending.pop(0)
            wait = self._not_before.pop(candidate.name, 0.0) - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)  # a same-provider retry honours its Retry-After
            attempt = Attempt(candidate, len(self.attempts) + 1, next(_call_ids), self._clock.now(), hedge=hedge)
            attempt.purpose = self.request.metadata.get("interlock.purpose", "")  # "eval" for interlock eval
            self.attempts.append(attempt)
            ref = self._providers(candidate.provider)
            if ref is None:
                self.fail(attempt, AdmissionRejected(candidate.provider, "disabled"))
                continue
            prefill = candidate.prefill and candidate.name not in self._no_prefill
            request, attempt.expect = continuation(self.request, self._prefix, prefill=prefill)
            attempt.delivered, attempt.prefilled = self._prefix, prefill and bool(self._prefix)
            try:
                if self._rails.rails:  # the request as sent, prefill included, is what the budget bounds
                    await self._rails.enter(request, attempt, self._input_tokens)
            except (AdmissionRejected, BudgetExceeded) as exc:
                self.fail(attempt, exc)
                continue
            if attempt.holds:
                self._entered.append(attempt)  # a rail only undoes what it holds: nothing held, nothing to leave
            try:
                attempt.stream = await ref.ask_stream(Call(request, candidate.model.id, call_id=attempt.call_id))
            except ActorStopped as exc:
                self.fail(attempt, exc)
                continue
            if self._on_attempt is not None:
                self._on_attempt(attempt)
            return attempt
        return None

    def fail(self, attempt: Attempt, error: InterlockError) -> None:
        """Record ``attempt``'s failure before its first token; an error every candidate would share ends the chain."""
        attempt.failed(error, self._clock.now())
        self.errors.append((attempt.candidate.name, error))
        if attempt.prefilled and error.kind == ErrorClass.BAD_REQUEST:
            # The prefill was refused: the same candidate restarts the answer and reconciles it;
            # this refusal is recorded on its attempt, never the error the caller sees.
            self._no_prefill.add(attempt.candidate.name)
            self._pending.insert(0, attempt.candidate)
            return
        admitted = not isinstance(error, (AdmissionRejected, ActorStopped, BudgetExceeded))
        name = attempt.candidate.name
        if admitted and isinstance(error, ProviderError) and name not in self._retried:
            now = self._clock.now()
            wait = same_provider_retry(error.kind, error.retry_after, self._deadline - now)
            if wait is not None:  # one more try here first: the retry is an attempt of its own
                self._retried.add(name)
                self._not_before[name] = now + wait
                self._pending.insert(0, attempt.candidate)
                return
        if ends_chain(error.kind, admitted=admitted):
            self._pending.clear()  # bad_request, auth, content policy: no other model will do better

    def cancel_losers(self, losers: Iterable[Attempt], reason: str) -> None:
        """Cancel ``losers`` upstream and close their streams, each marked cancelled for ``reason``."""
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

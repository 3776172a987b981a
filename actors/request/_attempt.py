"""One attempt at one candidate: its stream, its timings, what it produced, and its record."""

from __future__ import annotations

from typing import Any

from interlock._clock import Clock
from interlock._errors import AdmissionRejected, BudgetExceeded, InterlockError
from interlock._records import AttemptOutcome, AttemptRecord
from interlock._streams import EventStream
from interlock._types import (
    AttemptSummary,
    ChatRequest,
    Finish,
    FinishReason,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.policies._pricing import cost_cents
from interlock.policies._routing import Candidate

_CONTENT = (TextDelta, ThinkingDelta, RefusalDelta, ToolCallDelta, ToolCallDone)


class Attempt:
    """Mutable state of one attempt; the request run owns it, nothing else touches it."""

    __slots__ = (
        "_cost",
        "call_id",
        "cancel_reason",
        "candidate",
        "delivered",
        "ended",
        "error",
        "expect",
        "finish",
        "hedge",
        "holds",
        "number",
        "prefilled",
        "provider_reason",
        "purpose",
        "refusal",
        "served_model",
        "skipped_events",
        "started",
        "stream",
        "text",
        "thinking",
        "tool_calls",
        "ttft",
        "ttlt",
        "usage",
        "usage_estimated",
        "usage_reported",
        "verdict",
    )

    def __init__(self, candidate: Candidate, number: int, call_id: int, started: float, *, hedge: bool) -> None:
        self.candidate = candidate
        self.number = number
        self.call_id = call_id
        self.started = started
        self.hedge = hedge
        self.stream: EventStream[StreamEvent] | None = None
        self.ttft: float | None = None
        self.ttlt: float | None = None
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.usage = Usage()
        self._cost: float | None = None  # priced once per usage: records, summaries and sums all ask
        self.finish: FinishReason | None = None
        self.error: InterlockError | None = None
        self.cancel_reason: str | None = None
        self.ended: float | None = None  # when the attempt stopped, whatever its outcome
        self.holds: dict[str, object] = {}  # rail name -> what it holds for this attempt (each rail's own Struct)
        self.verdict: str | None = None
        # A resumed attempt: the text the caller had when it began, whether that text went as a
        # prefill, and what of it the attempt's stream must still reproduce before passing on.
        self.delivered = ""
        self.prefilled = False
        self.expect = ""
        self.usage_estimated = False  # the provider sent no output usage: billed from the delivered text
        self.skipped_events = 0  # malformed stream events the decoder skipped (from the ``Finish``)
        self.refusal: list[str] = []  # the model's refusal (``RefusalDelta``), never part of ``text``
        self.provider_reason = ""  # the provider's own finish reason, beside ``finish``
        self.served_model = ""  # the model id the provider says answered
        self.usage_reported = False  # the provider sent usage (else ``usage`` is zeros or an estimate)
        self.purpose = ""  # why the call was made: "" for the answer, else "review", "classify", "judge"...

    def observe(self, event: Any, clock: Clock) -> None:
        """Fold one event into the attempt's output and timings (the clock is read only for those)."""
        kind = type(event)
        if kind is TextDelta:
            self.text.append(event.text)
            if self.ttft is None:
                self.ttft = clock.now() - self.started
            return
        if self.ttft is None and kind in _CONTENT:
            self.ttft = clock.now() - self.started
        if kind is ThinkingDelta:
            self.thinking.append(event.text)
        elif kind is ToolCallDone:
            self.tool_calls.append(ToolCall(event.id, event.name, event.arguments, event.signature))
        elif kind is RefusalDelta:
            self.refusal.append(event.text)
        elif kind is UsageEvent:
            self.usage = event.usage
            self.usage_reported = True
            self._cost = None
        elif kind is Finish:
            now = clock.now()
            self.finish = event.reason
            self.skipped_events = event.skipped_events
            self.provider_reason = event.provider_reason
            self.served_model = event.served_model
            self.ttlt = now - self.started
            self.ended = now
            if self.ttft is None:
                self.ttft = self.ttlt

    def failed(self, error: InterlockError, now: float) -> None:
        """The attempt ended by ``error`` at ``now``; usage the provider reported before it is kept.

        A mid-stream error event after a usage chunk, or a blocked prompt that still counts its
        input, was paid for: that usage is billed and recorded, never dropped for the failure.
        """
        self.error = error
        self.ended = now
        usage = getattr(error, "usage", None)
        if usage is not None:
            self.usage = usage
            self.usage_reported = True
            self._cost = None

    def bill_delivered(self, input_tokens: int, output_tokens: int) -> None:
        """Bill text that reached the caller when the provider reported no output usage for it.

        A stream that broke (or was left) after delivering tokens cost money all the same: the
        estimate stands in for the missing usage, and the record says it is an estimate.
        """
        usage = self.usage
        self.usage = Usage(
            input_tokens=usage.input_tokens or input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
        self.usage_estimated = True
        self._cost = None

    @property
    def partial(self) -> str:
        """The text the caller has been given from this attempt.

        Not the adapter's own partial: a decoder may have decoded text from a chunk it then failed
        on, which never reached the caller; resuming after it would skip words the caller never saw.
        """
        return "".join(self.text)

    @property
    def outcome(self) -> AttemptOutcome:
        if self.cancel_reason is not None:
            return "cancelled"
        if self.error is not None:
            return "skipped" if _not_admitted(self.error) else "error"
        return "ok" if self.finish is not None else "cancelled"

    def cost(self) -> float:
        """Cents for this attempt's usage at the model's price (zero for subscription billing)."""
        cost = self._cost
        if cost is None:
            model = self.candidate.model
            price = model.price
            free = price is None or model.billing == "subscription"
            cost = self._cost = 0.0 if price is None or free else cost_cents(self.usage, price)
        return cost

    def summary(self) -> AttemptSummary:
        """How the caller sees this attempt in ``Route.attempts``."""
        return AttemptSummary(
            model=self.candidate.name,
            provider=self.candidate.provider,
            outcome=self.outcome,
            error=self.cancel_reason or (str(self.error.kind) if self.error else None),
            hedge=self.hedge,
            ttft_ms=_ms(self.ttft),
            ttlt_ms=_ms(self.ttlt),
            cost_cents=self.cost(),
            purpose=self.purpose,
            served_model=self.served_model,
        )

    def record(
        self, request: ChatRequest, request_id: str, task: str, ts: float, started: float, now: float
    ) -> AttemptRecord:
        """The ledger row for this attempt; ``started`` is the request's start, ``now`` the record time."""
        error = self.error
        ended = self.ended if self.ended is not None else now
        return AttemptRecord(
            request_id=request_id,
            attempt=self.number,
            ts=ts,
            tenant=request.tenant,
            caller=request.caller,
            task=task,
            model_class=self.candidate.model.model_class,
            model=self.candidate.name,
            provider=self.candidate.provider,
            outcome=self.outcome,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            cache_read_tokens=self.usage.cache_read_tokens,
            cache_write_tokens=self.usage.cache_write_tokens,
            cost_cents=self.cost(),
            ttft_ms=_ms(self.ttft),
            ttlt_ms=_ms(self.ttlt),
            error=str(error.kind) if error is not None else ("cancelled" if self.cancel_reason else None),
            error_detail=_detail(error),
            status=getattr(error, "status", None),
            finish_reason=self.finish,
            hedge=self.hedge,
            cancel_reason=self.cancel_reason,
            verdict=self.verdict,
            usage_estimated=self.usage_estimated,
            skipped_events=self.skipped_events,
            purpose=self.purpose,
            served_model=self.served_model,
            provider_finish_reason=self.provider_reason,
            start_ms=_ms(self.started - started),
            duration_ms=_ms(max(0.0, ended - self.started)),
        )


def _not_admitted(error: InterlockError) -> bool:
    return isinstance(error, (AdmissionRejected, BudgetExceeded))


def _detail(error: InterlockError | None) -> str:
    if error is None:
        return ""
    reason = getattr(error, "reason", None)
    return str(reason) if reason else str(error)[:300]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)

"""Provider batches, the records: what a submitted batch keeps in the state store, and each item's rows.

A ``BatchHandle`` is written to the state store when the batch is submitted: which provider and
model took it, the job, tenant and caller, and each item's request id (its ``custom_id`` at the
provider) and input-token estimate. A restarted process reads it back to poll and collect.

Each item that entered gives exactly one request row and one attempt row: an item the batch
answered, at the model's batch rate (``policies._pricing.batch_rate``) with the batch id on the
attempt; an item that failed in the batch with its error; an item refused before it was sent
(the routing, or the codec, would not take it) with the refusal and no batch id. The rows of one
item are a pure function of the handle and its result, and their keys (request id, attempt 1)
are fixed at submission: writing them again after a crash adds nothing (the ledger ignores a
row it already holds).
"""

from __future__ import annotations

from typing import Any

import msgspec

from interlock._errors import ErrorClass, InterlockError, ProviderError
from interlock._records import AttemptOutcome, AttemptRecord, LedgerRecord, RequestRecord
from interlock._types import (
    AttemptSummary,
    ChatResponse,
    Finish,
    FinishReason,
    RefusalDelta,
    Route,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.policies._pricing import Price, cost_cents
from interlock.policies._tokens import estimate_output_tokens

__all__ = [
    "BatchHandle", "BatchItem", "RefusedItem", "Refusal", "item_outcome", "refusal_of", "refused_error", "refused_rows",
]  # fmt: skip


class BatchItem(msgspec.Struct, frozen=True):
    """An item sent in the batch: its place among the inputs, its request id, its input estimate."""

    index: int
    request_id: str
    input_tokens: int
    first_choice: str = ""


class RefusedItem(msgspec.Struct, frozen=True):
    """An item never sent: its place, its request id, the error it ended with (kind and words).

    ``attempted``: the batch's model was chosen for it and its codec refused it (an attempt that
    failed, as an interactive call whose encoding fails); else the routing refused it (none).
    """

    index: int
    request_id: str
    kind: str
    message: str
    attempted: bool = False


class BatchHandle(msgspec.Struct, frozen=True, kw_only=True):
    """What the state store keeps of a submitted batch; enough to poll and collect it anywhere."""

    batch_id: str
    provider: str
    model: str
    model_id: str
    model_class: str
    task: str
    tenant: str
    caller: str
    ts: float
    total: int
    items: tuple[BatchItem, ...]
    refused: tuple[RefusedItem, ...] = ()
    price: Price | None = None  # the batch rate in force at submission, for a config that lost the model
    billing: str = "metered"
    max_tokens: int | None = None
    content_key: str = ""  # the hash of the inputs and options that finds this batch again
    collected: bool = False


class Refusal(InterlockError):
    """An item refused before it was sent, as a later process reads it from the handle."""

    def __init__(self, kind: str, message: str) -> None:
        known = {str(k) for k in ErrorClass}
        super().__init__(message, kind=ErrorClass(kind) if kind in known else ErrorClass.INTERNAL)


def refused_error(item: RefusedItem) -> InterlockError:
    """The error a refused item's result is."""
    return Refusal(item.kind, item.message)


def _answer(events: tuple[StreamEvent, ...]) -> ChatResponse:
    text, thinking, refusal = [], [], []
    calls: list[ToolCall] = []
    usage: Usage | None = None
    finish: FinishReason = "stop"
    provider_reason = ""
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            thinking.append(event.text)
        elif isinstance(event, RefusalDelta):
            refusal.append(event.text)
        elif isinstance(event, ToolCallDone):
            calls.append(ToolCall(event.id, event.name, event.arguments, event.signature))
        elif isinstance(event, UsageEvent):
            usage = event.usage if usage is None else usage + event.usage
        elif isinstance(event, Finish):
            finish, provider_reason = event.reason, event.provider_reason
    return ChatResponse(
        content="".join(text), thinking="".join(thinking), tool_calls=tuple(calls), finish_reason=finish,
        usage=usage, refusal="".join(refusal), provider_finish_reason=provider_reason,
    )  # fmt: skip


def _served(events: tuple[StreamEvent, ...]) -> str:
    return next((e.served_model for e in events if isinstance(e, Finish)), "")


def item_outcome(
    handle: BatchHandle, item: BatchItem, events: tuple[StreamEvent, ...], error: ProviderError | None,
    price: Price | None, now: float,
) -> tuple[ChatResponse | InterlockError, tuple[LedgerRecord, ...]]:  # fmt: skip
    """An item's result for the caller and its two rows (attempt, then request)."""
    answer = _answer(events) if error is None else None
    usage, estimated = _usage(handle, item, answer, error)
    cents = 0.0 if price is None or handle.billing == "subscription" else cost_cents(usage, price)
    served = _served(events)
    duration_ms = max(now - handle.ts, 0.0) * 1000.0
    outcome: AttemptOutcome = "ok" if error is None else "cancelled" if error.kind is ErrorClass.CANCELLED else "error"
    kind = None if error is None else str(error.kind)
    detail = "" if error is None else str(error)[:500]
    status = None if error is None else error.status
    who = _Who(item.request_id, handle.ts, handle.tenant, handle.caller, handle.task)
    attempt = AttemptRecord(
        **who.fields(), attempt=1, model_class=handle.model_class, model=handle.model, provider=handle.provider,
        outcome=outcome, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens, cost_cents=cents,
        error=kind, error_detail=detail, status=status, finish_reason=answer.finish_reason if answer else None,
        start_ms=0.0, duration_ms=duration_ms, usage_estimated=estimated, served_model=served,
        provider_finish_reason=answer.provider_finish_reason if answer else "", batch_id=handle.batch_id,
    )  # fmt: skip
    degraded = bool(item.first_choice) and item.first_choice != handle.model
    request = RequestRecord(
        **who.fields(), model_class=handle.model_class, model=handle.model, provider=handle.provider, outcome=outcome,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens, cost_cents=cents,
        error=kind, error_detail=detail, attempts=1, first_choice=item.first_choice or handle.model,
        served_model=served, usage_estimated=estimated, degraded=degraded and error is None,
        degraded_reason="skipped first choice: no batch API" if degraded and error is None else None,
    )  # fmt: skip
    rows: tuple[LedgerRecord, ...] = (attempt, request)
    if error is not None:
        return error, rows
    assert answer is not None
    summary = AttemptSummary(handle.model, handle.provider, "ok", cost_cents=cents, served_model=served)
    route = Route(
        model=handle.model, provider=handle.provider, model_class=handle.model_class, task=handle.task,
        attempts=(summary,), cost_cents=cents, first_choice=request.first_choice, served_model=served,
        usage_estimated=estimated, degraded=request.degraded, degraded_reason=request.degraded_reason,
    )  # fmt: skip
    return msgspec.structs.replace(answer, route=route), rows


def _usage(
    handle: BatchHandle, item: BatchItem, answer: ChatResponse | None, error: ProviderError | None
) -> tuple[Usage, bool]:
    """The billed usage: the provider's; else, for an answer, an estimate (marked); else the error's or none."""
    if answer is not None:
        if answer.usage is not None:
            return answer.usage, False
        said = answer.content + answer.thinking + answer.refusal + "".join(c.arguments for c in answer.tool_calls)
        return Usage(item.input_tokens, estimate_output_tokens(said, handle.max_tokens)), True
    if error is not None and error.usage is not None:
        return error.usage, False
    return Usage(), False


def refused_rows(handle: BatchHandle, item: RefusedItem) -> tuple[LedgerRecord, ...]:
    """A refused item's rows: its request row, and an attempt row when a model was chosen for it.

    Refused by the codec (the model could not take it), the item had its attempt at the batch's
    model, as an interactive call whose encoding fails does; refused by the routing, it had none.
    """
    who = _Who(item.request_id, handle.ts, handle.tenant, handle.caller, handle.task)
    detail = item.message[:500]
    if item.attempted:
        attempt = AttemptRecord(
            **who.fields(), attempt=1, model_class=handle.model_class, model=handle.model, provider=handle.provider,
            outcome="error", error=item.kind, error_detail=detail, start_ms=0.0, duration_ms=0.0,
        )  # fmt: skip
        request = RequestRecord(
            **who.fields(), model_class=handle.model_class, model=handle.model, provider=handle.provider,
            outcome="error", error=item.kind, error_detail=detail, attempts=1, first_choice=handle.model,
        )  # fmt: skip
        return attempt, request
    return (RequestRecord(**who.fields(), outcome="error", error=item.kind, error_detail=detail),)


def refusal_of(index: int, request_id: str, error: InterlockError, *, attempted: bool = False) -> RefusedItem:
    """A refused item from the error that refused it."""
    return RefusedItem(index, request_id, str(error.kind), str(error), attempted)


class _Who(msgspec.Struct, frozen=True):
    """The fields every row of one item shares."""

    request_id: str
    ts: float
    tenant: str
    caller: str
    task: str

    def fields(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

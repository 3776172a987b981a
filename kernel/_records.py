"""Ledger records: one per attempt and one per request, as persisted and exported, and two small ones.

Times are milliseconds; ``ts`` is wall-clock epoch seconds from the injected clock. Costs are
cents, computed when the call ends from the price table in force at that time.

A request leaves a ``BeginRecord`` when it enters (and an updated one as each attempt starts) and
its ``RequestRecord`` (with one ``AttemptRecord`` per attempt) when it ends; a begun request whose
end never reached the file (the process was killed) is closed as ``interrupted``, with what its
last begin said, when the ledger is next opened. A ``BreakerRecord`` is one change of a
provider's circuit breaker.
"""

from __future__ import annotations

from typing import Literal

import msgspec

AttemptOutcome = Literal["ok", "error", "cancelled", "skipped"]
"""How an attempt ended."""

Outcome = Literal["ok", "error", "cancelled", "skipped", "interrupted"]
"""How a request ended; ``interrupted``: the process ended while it ran (written at the next open)."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True, tag="attempt"):
    """One attempt at one candidate model; hedges and fallbacks each have their own."""

    request_id: str
    attempt: int
    ts: float
    tenant: str
    caller: str
    task: str
    model_class: str
    model: str
    provider: str
    outcome: AttemptOutcome
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_cents: float = 0.0
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    error: str | None = None
    error_detail: str = ""
    status: int | None = None
    finish_reason: str | None = None
    hedge: bool = False
    cancel_reason: str | None = None
    cache_hit: bool = False
    verdict: str | None = None
    # When the attempt ran, relative to its request's start, whatever its outcome (for traces).
    start_ms: float | None = None
    duration_ms: float | None = None
    # The provider sent no usage: the output tokens were estimated from the delivered text.
    usage_estimated: bool = False
    # Malformed stream events the decoder skipped (the answer went on without them).
    skipped_events: int = 0
    # Why the call was made: "" for the answer itself, else "review", "classify", "judge"...
    purpose: str = ""
    # The model id the provider says answered (its response's ``model``), beside the config name.
    served_model: str = ""
    # The provider's own finish reason as sent ("end_turn", "SAFETY"...), beside ``finish_reason``.
    provider_finish_reason: str = ""
    # What was asked of the model: "chat", or "embed" (texts to vectors).
    operation: str = "chat"
    # The provider batch this attempt went in (its id), "" for an interactive call.
    batch_id: str = ""


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True, tag="request"):
    """One request that entered the door, whatever its fate: exactly one per request."""

    request_id: str
    ts: float
    tenant: str
    caller: str
    task: str
    model_class: str = ""
    model: str = ""
    provider: str = ""
    outcome: Outcome = "ok"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_cents: float = 0.0
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    error: str | None = None
    error_detail: str = ""
    degraded: bool = False
    degraded_reason: str | None = None
    hedged: bool = False
    attempts: int = 0
    cache_hit: bool = False
    verdict: str | None = None
    # Classifier routing: the label and, as JSON, the features it saw and the chain it chose.
    route_label: str | None = None
    route_detail: str = ""
    # The job's first choice; the model id the provider says answered.
    first_choice: str = ""
    served_model: str = ""
    # The chain's candidates never called, as JSON: [{"model", "reason", "detail"}...].
    skipped: str = ""
    # The answer's provider sent no usage: its tokens and cost are estimates.
    usage_estimated: bool = False
    # The part of ``cost_cents`` spent on auxiliary calls (reviews, classifier, judge).
    aux_cost_cents: float = 0.0
    # What was asked: "chat", or "embed" (texts to vectors).
    operation: str = "chat"
    # The personal-data detectors that fired on the prompt, comma-separated, never the values.
    pii_detected: str = ""


class BeginRecord(msgspec.Struct, frozen=True, kw_only=True, tag="begin"):
    """A request entered, or started one more attempt: told at once, never waited for.

    The store keeps one begun row per request, the one with the most ``attempts``; the request's
    end (a ``RequestRecord``) replaces it. ``attempts`` counts the attempts sent to a provider so
    far, and ``model_class``, ``model`` and ``provider`` name the latest of them (empty before the
    first).
    """

    request_id: str
    ts: float
    tenant: str
    caller: str
    task: str
    attempts: int = 0
    model_class: str = ""
    model: str = ""
    provider: str = ""


class BreakerRecord(msgspec.Struct, frozen=True, kw_only=True, tag="breaker"):
    """One change of a provider's circuit breaker, and what caused it."""

    ts: float
    provider: str
    from_state: str
    to_state: str
    cause: str


LedgerRecord = AttemptRecord | RequestRecord | BeginRecord | BreakerRecord

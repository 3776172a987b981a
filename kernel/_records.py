"""Ledger records: one per attempt and one per request, as persisted and exported.

Times are milliseconds; ``ts`` is wall-clock epoch seconds from the injected clock. Costs are
cents, computed when the call ends from the price table in force at that time.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Outcome = Literal["ok", "error", "cancelled", "skipped"]


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
    outcome: Outcome
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


LedgerRecord = AttemptRecord | RequestRecord

"""Hedging policy: a budget that throttles hedges, and the delay before a hedge starts.

The budget is gRPC's retry/hedging throttle (gRFC A6) as a pure token bucket: it starts full at
``max_tokens``; each successful call adds ``token_ratio``; each hedge spends one token; hedges
are allowed only while more than half the bucket is left. A provider that keeps failing stops
refilling it, so hedging cannot double the load on a fleet that is already struggling. gRPC
also takes a token per failed call: ``on_failure`` does that, for an actor that wants failures
to throttle hedges as well. Tokens are kept in thousandths (gRPC supports three decimals of
``token_ratio``), so repeated additions of 0.1 never drift.

Each process keeps its own buckets, also when a fleet shares its state store (breakers and
cooldowns are shared; this is not). The throttle bounds hedges by a ratio of the successes
its holder saw: every process's hedges stay within ``token_ratio`` of its own successes (plus
its half-bucket), so the fleet's stay within the same ratio of the fleet's, which is the bound
a shared bucket would give, and a provider in trouble stops refilling every process's bucket
alike. A shared bucket would cost a store round trip on each hedge decision, made while a
request waits for its first token, for no tighter bound.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from interlock.policies._latency import RollingLatency

_MILLI = 1000


class HedgeBudgetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Throttle settings; the defaults are gRPC's example throttling policy (10 tokens, ratio 0.1)."""

    max_tokens: float = 10.0
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not self.max_tokens > 0:
            raise ValueError("max_tokens must be > 0")
        if not self.token_ratio > 0:
            raise ValueError("token_ratio must be > 0")

    @property
    def max_milli(self) -> int:
        """The bucket size in thousandths of a token."""
        return round(self.max_tokens * _MILLI)

    @property
    def ratio_milli(self) -> int:
        """The refill per success in thousandths of a token (gRPC keeps three decimals)."""
        return max(1, round(self.token_ratio * _MILLI))


class HedgeBudget(msgspec.Struct, frozen=True):
    """The bucket's level in thousandths of a token; build a full one with ``full_budget``."""

    milli_tokens: int

    @property
    def tokens(self) -> float:
        """The level in tokens."""
        return self.milli_tokens / _MILLI


def full_budget(cfg: HedgeBudgetConfig) -> HedgeBudget:
    """A bucket at its maximum, as gRPC starts one."""
    return HedgeBudget(cfg.max_milli)


def can_hedge(budget: HedgeBudget, cfg: HedgeBudgetConfig) -> bool:
    """Whether a hedge may start: strictly more than half the bucket is left."""
    return 2 * budget.milli_tokens > cfg.max_milli


def on_success(budget: HedgeBudget, cfg: HedgeBudgetConfig) -> HedgeBudget:
    """A call succeeded: refill by ``token_ratio``, never past the maximum."""
    return HedgeBudget(min(cfg.max_milli, budget.milli_tokens + cfg.ratio_milli))


def spend_hedge(budget: HedgeBudget, cfg: HedgeBudgetConfig) -> tuple[HedgeBudget, bool]:
    """Take one token for a hedge if allowed; returns the new level and whether it was allowed."""
    if not can_hedge(budget, cfg):
        return budget, False
    return HedgeBudget(max(0, budget.milli_tokens - _MILLI)), True


# -- hedge delay ---------------------------------------------------------------------------------


class HedgeDelay(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long to wait for a first token before hedging to the next candidate.

    ``mode = "fixed"`` waits ``fixed_ms``. ``mode = "p95"`` waits the 95th percentile of the
    first candidate's recent TTFTs, clamped to ``[min_ms, max_ms]``; until ``min_samples``
    TTFTs are known it waits ``fallback_ms``. The p95 follows "The Tail at Scale" (Dean and
    Barroso): hedging after the 95th percentile adds about 5% load and cuts the tail.
    """

    mode: Literal["fixed", "p95"] = "p95"
    fixed_ms: float = 2000.0
    min_ms: float = 250.0
    max_ms: float = 10_000.0
    fallback_ms: float = 2000.0
    min_samples: int = 20

    def __post_init__(self) -> None:
        if min(self.fixed_ms, self.min_ms, self.fallback_ms) < 0:
            raise ValueError("delays must be >= 0 ms")
        if self.max_ms < self.min_ms:
            raise ValueError("max_ms must be >= min_ms")
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")


def hedge_delay_s(delay: HedgeDelay, ttft: RollingLatency | None) -> float:
    """The hedge delay in seconds; ``ttft`` is the first candidate's TTFT window, in seconds."""
    if delay.mode == "fixed":
        return delay.fixed_ms / 1000.0
    if ttft is None or len(ttft) < delay.min_samples:
        return delay.fallback_ms / 1000.0
    p95 = ttft.percentile(95)
    assert p95 is not None  # the window holds at least min_samples >= 1 samples
    return min(max(p95 * 1000.0, delay.min_ms), delay.max_ms) / 1000.0

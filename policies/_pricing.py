"""Pricing: what a call costs, in cents, from its token usage and the model's price list.

Prices are quoted as providers quote them, in USD per million tokens. ``Usage`` keeps uncached
input, cache reads and cache writes apart (``input_tokens`` excludes both), so each token is
charged exactly once, at its own price.

A subscription model (a flat-rate plan behind a command line) has no per-token price; the
config marks it and the caller charges 0 cents. That choice is the caller's, not this module's.
"""

from __future__ import annotations

import math

import msgspec

from interlock._types import Usage

_CENTS_PER_USD = 100.0
_PER_MILLION = 1_000_000.0


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model's prices in USD per million tokens.

    ``cache_read`` absent means the provider gives no discount for cached input, so a cache
    read is charged at the input price; 0 would be a free lunch that no provider serves.
    ``cache_write`` absent means writing the cache costs what plain input costs (OpenAI's
    automatic caching works that way); Anthropic charges more for writes (1.25x input for a
    5-minute cache) and such a price list sets it.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite price >= 0, got {value!r}")

    @property
    def cache_read_price(self) -> float:
        """The price of a cache read: ``cache_read``, or the input price when absent."""
        return self.input if self.cache_read is None else self.cache_read

    @property
    def cache_write_price(self) -> float:
        """The price of a cache write: ``cache_write``, or the input price when absent."""
        return self.input if self.cache_write is None else self.cache_write


def cost_cents(usage: Usage, price: Price) -> float:
    """The cost of ``usage`` at ``price``, in cents (unrounded)."""
    usd_micro = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read_price
        + usage.cache_write_tokens * price.cache_write_price
    )
    return usd_micro / _PER_MILLION * _CENTS_PER_USD


def estimate_cents(input_tokens: int, max_output_tokens: int, price: Price, *, may_write_cache: bool = False) -> float:
    """An upper estimate for a budget reservation, in cents, settled later with the real cost.

    Input is priced as uncached (a cache hit only makes it cheaper) and the output as if all
    ``max_output_tokens`` came. With ``may_write_cache`` (the request marks cache breakpoints),
    input is priced at the dearer of input and cache write, since a write may cost more.
    """
    input_price = max(price.input, price.cache_write_price) if may_write_cache else price.input
    usd_micro = max(input_tokens, 0) * input_price + max(max_output_tokens, 0) * price.output
    return usd_micro / _PER_MILLION * _CENTS_PER_USD


def batch_rate(price: Price | None, batch_price: Price | None) -> Price | None:
    """The price a provider batch call is charged at: ``batch_price``, else the interactive ``price``.

    OpenAI and Anthropic quote batch work at half their interactive prices; a model whose
    config names no batch price is charged its interactive one, never a guessed discount.
    """
    return price if batch_price is None else batch_price

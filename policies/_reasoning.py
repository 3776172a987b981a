"""Reasoning asked for, in each provider's own terms: an effort level or a thinking budget.

A caller gives one of the two (``Reasoning.effort`` or ``Reasoning.budget_tokens``); a provider
takes one: OpenAI an effort, Anthropic and Gemini a budget in tokens. The other is derived here,
on a fixed scale, so the same request asks every provider for about as much thinking.
"""

from __future__ import annotations

from typing import Final

from interlock._types import Reasoning, ReasoningEffort

# Thinking budget per effort level; an effort per budget is the smallest level that covers it.
BUDGETS: Final[dict[ReasoningEffort, int]] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
ANTHROPIC_MIN_BUDGET: Final = 1024  # the Messages API refuses a smaller thinking budget


def effort_of(reasoning: Reasoning) -> ReasoningEffort:
    """The effort level ``reasoning`` asks for (from its budget when it gives only that)."""
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens or BUDGETS["medium"]
    return next((level for level, size in BUDGETS.items() if budget <= size), "high")


def budget_of(reasoning: Reasoning, max_tokens: int) -> int:
    """The thinking budget ``reasoning`` asks for, kept under ``max_tokens`` (the answer needs room)."""
    budget = reasoning.budget_tokens if reasoning.budget_tokens is not None else BUDGETS[effort_of(reasoning)]
    return max(1, min(budget, max_tokens - 1))

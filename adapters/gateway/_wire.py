"""The gateway's own wire shapes: its ``interlock`` extension member, and the health endpoints.

Everything else the gateway reads or writes is OpenAI's Chat Completions wire, modelled once in
``interlock.adapters.providers.openai._server_wire`` (shared with the simulator). The answers
here extend that module's completion and chunk with one member, ``interlock``: how the answer
was served. It comes last, after OpenAI's own members.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.providers.openai._server_wire import ChatCompletionChunkOut, ChatCompletionOut


class SkippedOut(msgspec.Struct, frozen=True):
    """A candidate of the job's chain that was never called, and why (``context_window``, ``pii``...)."""

    model: str
    reason: str
    detail: str


class RouteOut(msgspec.Struct, frozen=True, kw_only=True):
    """Extension member ``interlock``: which model served, what was degraded, what it cost.

    ``model`` is the config's name for the model that served, ``served_model`` the id the provider
    says answered (``""`` when it did not say), ``first_choice`` the job's first choice (``""``
    when the door did not say). ``usage_estimated``: the provider reported no usage, so ``usage``
    is null and ``cost_cents`` was billed from an estimate. ``provider_finish_reason`` is the
    provider's own finish reason (``end_turn``, ``SAFETY``, ``refusal``...) beside the mapped one.
    """

    request_id: str
    model: str
    provider: str
    model_class: str
    task: str
    degraded: bool
    degraded_reason: str | None
    hedged: bool
    cost_cents: float
    attempts: int
    first_choice: str = ""
    served_model: str = ""
    cache_hit: bool = False
    usage_estimated: bool = False
    provider_finish_reason: str = ""
    aux_cost_cents: float = 0.0
    skipped: list[SkippedOut] = []


class RoutedCompletionOut(ChatCompletionOut, frozen=True, kw_only=True):
    """A ``chat.completion`` with the ``interlock`` member once the route is known."""

    interlock: RouteOut | UnsetType = UNSET


class RoutedChunkOut(ChatCompletionChunkOut, frozen=True, kw_only=True):
    """A ``chat.completion.chunk``; the final ones carry the ``interlock`` member."""

    interlock: RouteOut | UnsetType = UNSET


class ProviderStateOut(msgspec.Struct, frozen=True):
    """One provider in ``GET /readyz``."""

    breaker: str
    healthy: bool
    cooling_down_s: float
    free_slots: int
    in_flight: int


class ReadinessOut(msgspec.Struct, frozen=True):
    """``GET /healthz`` and ``GET /readyz``: ready when some provider is healthy, its breaker not open."""

    status: str
    providers: dict[str, ProviderStateOut]

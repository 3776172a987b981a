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


class RouteOut(msgspec.Struct, frozen=True, kw_only=True):
    """Extension member ``interlock``: which model served, what was degraded, what it cost."""

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

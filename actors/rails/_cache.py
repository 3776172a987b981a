"""The cache rail: an exact-match response cache, scoped per tenant, in the state store.

Only complete, successful answers are stored (and, where the job verifies, only accepted ones).
A hit replays as a stream with the same event shape a provider gives — text, tool calls, usage
(zero: nothing was spent), finish — so callers cannot tell it apart, and retries are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from interlock._clock import Clock
from interlock._types import (
    ChatRequest,
    ChatResponse,
    Finish,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.adapters.stores._state_store import CacheStore
from interlock.policies._cache_key import cache_key

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(ChatResponse).decode


class CacheRail:
    """Looks answers up before routing and stores accepted ones after."""

    def __init__(self, store: CacheStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @staticmethod
    def key(request: ChatRequest, task: str) -> str:
        """The cache key of ``request`` under ``task``, scoped to its tenant."""
        return cache_key(request, task, request.tenant)

    async def lookup(self, key: str) -> ChatResponse | None:
        """The stored answer, or None on a miss or an expired entry."""
        raw = await self._store.get(key, self._clock.wall())
        return None if raw is None else _decode(raw)

    async def store(self, key: str, response: ChatResponse, ttl_s: float) -> None:
        """Keep ``response`` (its route stripped: a hit gets its own) for ``ttl_s`` seconds."""
        stored = msgspec.structs.replace(response, route=None)
        await self._store.put(key, _encode(stored), self._clock.wall() + ttl_s)


def replay(response: ChatResponse) -> Iterator[StreamEvent]:
    """The events a provider would have streamed for ``response``, at zero usage."""
    if response.thinking:
        yield ThinkingDelta(response.thinking)
    if response.content:
        yield TextDelta(response.content)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDone(index, call.id, call.name, call.arguments, call.signature)
    yield UsageEvent(Usage())
    yield Finish(response.finish_reason)

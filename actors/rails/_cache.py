"""The cache rail: an exact-match response cache, scoped per tenant, in the state store.

Only complete, successful answers are stored (and, where the job verifies, only accepted ones).
A hit replays as a stream with the same event shape a provider gives — text, refusal, tool
calls, usage (zero: nothing was spent), finish — so callers cannot tell it apart, and retries are
idempotent. The answer is stored with who made it (``stored_route``): a hit says the model and
provider that made it, flagged as a hit, never an anonymous answer.

The cache is local when the state store fails: a lookup that cannot be read is a miss and a
store that cannot be written is skipped, each recorded by the rail's ``StateOutage``
(``_state_outage``); the request goes on as if the cache were cold.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from interlock._clock import Clock
from interlock._embeddings import EmbedResponse
from interlock._types import (
    ChatRequest,
    ChatResponse,
    Finish,
    RefusalDelta,
    Route,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.actors.rails._state_outage import StateOutage
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import CacheStore
from interlock.policies._cache_key import cache_key

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(ChatResponse).decode
_decode_vectors = msgspec.msgpack.Decoder(EmbedResponse).decode


class CacheRail:
    """Looks answers up before routing and stores accepted ones after."""

    def __init__(self, store: CacheStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.outage = StateOutage("cache", "open")

    @staticmethod
    def key(request: ChatRequest, task: str) -> str:
        """The cache key of ``request`` under ``task``, scoped to its tenant."""
        return cache_key(request, task, request.tenant)

    async def lookup(self, key: str) -> ChatResponse | None:
        """The stored answer, or None on a miss or an expired entry."""
        raw = await self._get(key)
        return None if raw is None else _decode(raw)

    async def store(self, key: str, response: ChatResponse, ttl_s: float) -> None:
        """Keep ``response`` for ``ttl_s`` seconds, with who made it (``stored_route``) as its route."""
        route = None if response.route is None else stored_route(response.route)
        stored = msgspec.structs.replace(response, route=route)
        await self._put(key, _encode(stored), ttl_s)

    async def lookup_vectors(self, key: str) -> EmbedResponse | None:
        """The stored embeddings (``policies._embed.embed_cache_key``), or None on a miss or expiry."""
        raw = await self._get(key)
        return None if raw is None else _decode_vectors(raw)

    async def store_vectors(self, key: str, response: EmbedResponse, ttl_s: float) -> None:
        """Keep embeddings for ``ttl_s`` seconds with who made them; the usage is not kept (a hit costs nothing)."""
        route = None if response.route is None else stored_route(response.route)
        stored = msgspec.structs.replace(response, usage=None, route=route)
        await self._put(key, _encode(stored), ttl_s)

    async def _get(self, key: str) -> bytes | None:
        try:
            raw = await self._store.get(key, self._clock.wall())
        except StateStoreError as exc:
            self.outage.missed(exc)
            return None
        if self.outage.down:
            self.outage.recovered()
        return raw

    async def _put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._store.put(key, value, self._clock.wall() + ttl_s)
        except StateStoreError as exc:
            self.outage.missed(exc)


def stored_route(route: Route) -> Route:
    """What a cached answer keeps of its route: who made it and how it was labelled, not what it cost.

    A hit gets its own cost (zero), timings and attempts (none); the model, provider, class,
    served model id and degradation label belong to the answer, so they travel with it.
    """
    return Route(
        model=route.model, provider=route.provider, model_class=route.model_class, task=route.task,
        degraded=route.degraded, degraded_reason=route.degraded_reason, first_choice=route.first_choice,
        served_model=route.served_model, verdict=route.verdict,
    )  # fmt: skip


def replay(response: ChatResponse) -> Iterator[StreamEvent]:
    """The events a provider would have streamed for ``response``, at zero usage."""
    if response.thinking:
        yield ThinkingDelta(response.thinking)
    if response.content:
        yield TextDelta(response.content)
    if response.refusal:
        yield RefusalDelta(response.refusal)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDone(index, call.id, call.name, call.arguments, call.signature)
    yield UsageEvent(Usage())
    served = response.route.served_model if response.route is not None else ""
    yield Finish(response.finish_reason, provider_reason=response.provider_finish_reason, served_model=served)

"""Stored Responses-API answers: kept by tenant and id where the door keeps values, for continuations.

``ResponseStore`` puts a completed response and its whole conversation into ``KeptValues`` —
``interlock.Door``'s ``remember`` / ``recall`` (its state store, shared by every process of the
host), or ``MemoryKept`` in this process for a door without one — for ``STORE_TTL_S``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import msgspec

from interlock._types import (
    Message,
)
from interlock.adapters.gateway import _responses_wire as w
from interlock.adapters.gateway._failures import HttpFailure
from interlock.adapters.providers.openai._server_wire import ErrorBody, ErrorOut

STORE_CAPACITY = 1000  # responses an in-process store keeps (``MemoryKept``)
STORE_TTL_S = 30 * 24 * 3600.0  # how long a stored response can be continued or read
_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
# Each option interlock cannot honour, and when it is set: to anything but the value that asks for nothing.
_UNSUPPORTED: tuple[tuple[str, Callable[[w.ResponsesRequest], bool]], ...] = (
    ("background", lambda b: b.background is True),
    ("include", lambda b: bool(b.include)),
    ("reasoning", lambda b: any(v is not None for v in (b.reasoning or {}).values())),
    ("prompt", lambda b: b.prompt is not None),
    ("conversation", lambda b: b.conversation is not None),
    ("truncation", lambda b: b.truncation not in (None, "disabled")),
    ("top_logprobs", lambda b: bool(b.top_logprobs)),
    ("max_tool_calls", lambda b: b.max_tool_calls is not None),
    ("service_tier", lambda b: b.service_tier not in (None, "auto", "default")),
    ("context_management", lambda b: b.context_management is not None),
    ("text.verbosity", lambda b: b.text is not None and b.text.verbosity is not None),
)

STORE_CAPACITY = 1000  # responses an in-process store keeps (``MemoryKept``)
STORE_TTL_S = 30 * 24 * 3600.0  # how long a stored response can be continued or read


class Stored(msgspec.Struct, frozen=True):
    """A completed response and its whole conversation, its own output last."""

    response: w.ResponseOut
    conversation: tuple[Message, ...]


class KeptValues(Protocol):
    """Where stored responses live: ``interlock.Door``'s ``remember`` / ``recall`` (its state store)."""

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def recall(self, key: str) -> bytes | None: ...


class MemoryKept:
    """``KeptValues`` in this process: at most ``capacity`` values, least recently used dropped first.

    It stands in for a door without a state store; expiry is left to the capacity.
    """

    def __init__(self, capacity: int = STORE_CAPACITY) -> None:
        self._capacity = capacity
        self._kept: OrderedDict[str, bytes] = OrderedDict()

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value``, dropping the least recently used past the capacity."""
        self._kept[key] = value
        self._kept.move_to_end(key)
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)

    async def recall(self, key: str) -> bytes | None:
        """The value kept under ``key``, or None; a read refreshes its place."""
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found


_encode_stored = msgspec.msgpack.Encoder().encode
_decode_stored = msgspec.msgpack.Decoder(Stored).decode


class ResponseStore:
    """Completed responses by tenant and id, in ``KeptValues``."""

    def __init__(self, kept: KeptValues) -> None:
        self._kept = kept

    async def get(self, tenant: str, response_id: str) -> Stored | None:
        """The stored response, or None (also when another tenant stored it)."""
        raw = await self._kept.recall(_key(tenant, response_id))
        return None if raw is None else _decode_stored(raw)

    async def put(self, tenant: str, stored: Stored) -> None:
        """Keep ``stored`` for ``STORE_TTL_S``."""
        await self._kept.remember(_key(tenant, stored.response.id), _encode_stored(stored), STORE_TTL_S)


def _key(tenant: str, response_id: str) -> str:
    # The tenant's length first: no tenant name can make another tenant's key.
    return f"responses:{len(tenant)}:{tenant}:{response_id}"


def not_found(response_id: str, param: str | None) -> HttpFailure:
    """OpenAI's 404 for a response id it does not know."""
    body = ErrorBody(
        message=f"Response with id {response_id!r} not found.",
        type="invalid_request_error",
        param=param,
        code="response_not_found",
    )
    return HttpFailure(404, ErrorOut(body), should_retry=False)

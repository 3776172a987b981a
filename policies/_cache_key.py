"""The response-cache key: a stable hash of what decides an answer, scoped to a tenant and a job.

``cache_key(request, task, tenant)`` hashes a normalized copy of the request with BLAKE2b over
msgspec's deterministic MessagePack encoding (dict keys sorted), so the key is the same in every
process and on every run. What goes in, and why:

- **Keyed** (``KEYED_FIELDS``): messages, tools, tool_choice, parallel_tool_calls,
  response_format, temperature, top_p, stop, seed, max_tokens — they shape the answer; plus
  ``model`` and ``model_class`` (a pin restricts who may answer, so an answer by another model
  must not satisfy it) and ``sensitivity`` (it changes routing: a PII request may only be
  answered by a local model, so it must never hit an answer a cloud model wrote).
- **Scope**: the ``task`` and ``tenant`` arguments (the plan's resolved job and the tenant),
  not the request's own fields, so tenants never share answers.
- **Routing-only, left out** (``ROUTING_ONLY_FIELDS``): caller, metadata, request_id (who asks
  and how it is traced), task and tenant (taken from the arguments), cache_system and
  cache_tools, and each message's cache_breakpoint (provider prompt-cache hints: they change
  the price of a call, never its answer).

Normalization, so that requests meaning the same thing share a key:
stop sequences are a set (sorted, deduplicated); ``TextFormat`` is the same as no format;
tool_choice and parallel_tool_calls mean nothing without tools and are dropped then; numbers
in float fields are floats (``1`` is ``1.0``, ``-0.0`` is ``0.0``); dict key order never
matters (equal requests compare their JSON Schema dicts as unordered, and so does the key).
Nothing else is rewritten: text is hashed byte for byte, lists keep their order.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from interlock._types import (
    ChatRequest,
    Message,
    Reasoning,
    ResponseFormat,
    Sensitivity,
    TextFormat,
    ToolChoice,
    ToolSpec,
)

# Bump when the material or its normalization changes: old entries then simply stop matching.
CACHE_KEY_VERSION: Final = 2  # 2: the reasoning asked for is keyed
_PERSON: Final = b"interlock.cache"  # BLAKE2b personalization: keys of nothing else collide

KEYED_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "max_tokens",
        "model",
        "model_class",
        "sensitivity",
        "reasoning",
    }
)
ROUTING_ONLY_FIELDS: Final[frozenset[str]] = frozenset(
    {"task", "tenant", "caller", "metadata", "request_id", "cache_system", "cache_tools"}
)


class _KeyMaterial(msgspec.Struct, frozen=True, array_like=True):
    """Everything a key is made of, after normalization; encoded positionally."""

    version: int
    tenant: str
    task: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    response_format: ResponseFormat | None
    temperature: float | None
    top_p: float | None
    stop: tuple[str, ...]
    seed: int | None
    max_tokens: int | None
    model: str | None
    model_class: str | None
    sensitivity: Sensitivity
    reasoning: Reasoning | None


_encoder: Final = msgspec.msgpack.Encoder(order="deterministic")


def _float(value: float | None) -> float | None:
    # ``+ 0.0`` turns -0.0 into 0.0; ``float`` turns an int that slipped in into a float.
    return None if value is None else float(value) + 0.0


def _message(message: Message) -> Message:
    if not message.cache_breakpoint:
        return message
    return Message(role=message.role, content=message.content)


def key_material(request: ChatRequest, task: str, tenant: str) -> bytes:
    """The canonical bytes that ``cache_key`` hashes (exposed so tests can see what is keyed)."""
    has_tools = bool(request.tools)
    response_format = None if isinstance(request.response_format, TextFormat) else request.response_format
    material = _KeyMaterial(
        version=CACHE_KEY_VERSION,
        tenant=tenant,
        task=task,
        messages=tuple(_message(m) for m in request.messages),
        tools=request.tools,
        tool_choice=request.tool_choice if has_tools else None,
        parallel_tool_calls=request.parallel_tool_calls if has_tools else None,
        response_format=response_format,
        temperature=_float(request.temperature),
        top_p=_float(request.top_p),
        stop=tuple(sorted(set(request.stop))),
        seed=request.seed,
        max_tokens=request.max_tokens,
        model=request.model,
        model_class=request.model_class,
        sensitivity=request.sensitivity,
        reasoning=request.reasoning,
    )
    return _encoder.encode(material)


def cache_key(request: ChatRequest, task: str, tenant: str) -> str:
    """A stable 64-hex-digit key for ``request`` under job ``task`` for ``tenant``."""
    digest = hashlib.blake2b(key_material(request, task, tenant), digest_size=32, person=_PERSON)
    return digest.hexdigest()

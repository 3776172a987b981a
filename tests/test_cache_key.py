"""The response-cache key: equal requests share a key, any change of meaning, tenant or task splits it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    TextFormat,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
)
from interlock.policies._cache_key import KEYED_FIELDS, ROUTING_ONLY_FIELDS, cache_key

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}


def base_request(**changes: Any) -> ChatRequest:
    """A request that sets most fields, with tools, so every knob has something to change."""
    request = ChatRequest(
        messages=(Message.text("system", "Be terse."), Message.text("user", "Weather in Paris?")),
        tools=(ToolSpec("weather", "Look up the weather", SCHEMA),),
        tool_choice=ToolChoiceMode("auto"),
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        seed=7,
        max_tokens=256,
        task="chat",
        tenant="acme",
    )
    return msgspec.structs.replace(request, **changes)


def key(request: ChatRequest, task: str = "chat", tenant: str = "acme") -> str:
    """The key under the default task and tenant."""
    return cache_key(request, task, tenant)


def test_key_is_a_fixed_length_hex_digest() -> None:
    """A key is 64 lowercase hex digits."""
    value = key(base_request())
    assert len(value) == 64
    assert int(value, 16) >= 0
    assert value == value.lower()


def test_equal_requests_built_apart_share_a_key() -> None:
    """Two equal requests built separately, schema keys in another order, get one key."""
    reordered = {"properties": {"days": {"type": "integer"}, "city": {"type": "string"}}, "type": "object"}
    other = base_request(tools=(ToolSpec("weather", "Look up the weather", reordered),))
    assert other == base_request()
    assert key(other) == key(base_request())


PINNED_KEY = "55b3e798ec7fb4ec56bc020521e0aa44a70de8105a331168fd7892f56cc01be3"  # version 2: reasoning keyed


def test_key_is_pinned_across_processes_and_releases() -> None:
    """The key of a fixed request is a known constant: no per-process salt, no silent format change."""
    assert key(base_request()) == PINNED_KEY


def test_every_request_field_is_keyed_or_declared_routing_only() -> None:
    """Each ChatRequest field is either part of the key or explicitly left out, never both or neither."""
    fields = {f.name for f in msgspec.structs.fields(ChatRequest)}
    assert fields == KEYED_FIELDS | ROUTING_ONLY_FIELDS
    assert not KEYED_FIELDS & ROUTING_ONLY_FIELDS


@pytest.mark.parametrize(
    "changes",
    [
        {"caller": "billing-svc"},
        {"metadata": {"trace": "abc"}},
        {"request_id": "r-42"},
        {"cache_system": True},
        {"cache_tools": True},
        {"task": "other-task"},
        {"tenant": "other-tenant"},
        {
            "messages": (
                Message.text("system", "Be terse.", cache_breakpoint=True),
                Message.text("user", "Weather in Paris?"),
            )
        },
    ],
    ids=lambda c: next(iter(c)),
)
def test_routing_only_fields_leave_the_key_alone(changes: dict[str, Any]) -> None:
    """Who asks, tracing data, prompt-cache hints and the request's own task/tenant fields do not change the key."""
    assert key(base_request(**changes)) == key(base_request())


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": (Message.text("system", "Be terse."), Message.text("user", "Weather in Lyon?"))},
        {"messages": (Message.text("user", "Be terse."), Message.text("user", "Weather in Paris?"))},
        {"messages": (Message.text("user", "Weather in Paris?"),)},
        {"tools": ()},
        {"tools": (ToolSpec("weather", "Look up the forecast", SCHEMA),)},
        {"tools": (ToolSpec("weather", "Look up the weather", {**SCHEMA, "required": ["city"]}),)},
        {"tool_choice": ToolChoiceMode("required")},
        {"tool_choice": ToolChoiceNamed("weather")},
        {"parallel_tool_calls": False},
        {"response_format": JsonObjectFormat()},
        {"response_format": JsonSchemaFormat("w", SCHEMA)},
        {"temperature": 0.3},
        {"temperature": None},
        {"top_p": 1.0},
        {"stop": ("END", "STOP")},
        {"seed": 8},
        {"max_tokens": 257},
        {"model": "gpt-4o-mini"},
        {"model_class": "fast"},
        {"sensitivity": "pii"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_change_of_meaning_changes_the_key(changes: dict[str, Any]) -> None:
    """Changing what shapes the answer (prompt, tools, sampling, format, pins, sensitivity) changes the key."""
    assert key(base_request(**changes)) != key(base_request())


def test_tenant_and_task_scope_the_key() -> None:
    """The same request under another tenant or another job gets another key."""
    request = base_request()
    assert key(request, tenant="globex") != key(request)
    assert key(request, task="summarize") != key(request)


def test_equivalent_spellings_share_a_key() -> None:
    """Stop order and repeats, text format vs none, ints in float fields, -0.0 vs 0.0 all normalize away."""
    assert key(base_request(stop=("b", "a", "b"))) == key(base_request(stop=("a", "b")))
    assert key(base_request(response_format=TextFormat())) == key(base_request(response_format=None))
    assert key(base_request(temperature=1)) == key(base_request(temperature=1.0))
    assert key(base_request(temperature=-0.0)) == key(base_request(temperature=0.0))


def test_tool_settings_without_tools_do_not_matter() -> None:
    """Without tools, tool_choice and parallel_tool_calls cannot change the answer, so not the key."""
    bare = base_request(tools=(), tool_choice=None)
    assert key(msgspec.structs.replace(bare, tool_choice=ToolChoiceMode("none"), parallel_tool_calls=True)) == key(bare)


# -- properties ------------------------------------------------------------------------------

texts = st.text(max_size=12)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
json_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | finite_floats | texts
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
parts = st.one_of(
    st.builds(TextPart, texts),
    st.builds(ImagePart, url=st.none() | texts),
    st.builds(ToolCallPart, id=texts, name=texts, arguments=texts),
    st.builds(ToolResultPart, tool_call_id=texts, content=texts, is_error=st.booleans()),
)
messages = st.builds(
    Message,
    role=st.sampled_from(["system", "user", "assistant", "tool"]),
    content=st.lists(parts, min_size=1, max_size=3).map(tuple),
    cache_breakpoint=st.booleans(),
)
tools = st.builds(ToolSpec, name=texts, description=texts, parameters=st.dictionaries(texts, json_values, max_size=4))
optional_floats = st.none() | st.floats(min_value=0.0, max_value=2.0)
requests = st.builds(
    ChatRequest,
    messages=st.lists(messages, min_size=1, max_size=4).map(tuple),
    tools=st.lists(tools, max_size=2).map(tuple),
    tool_choice=st.none() | st.builds(ToolChoiceMode, st.sampled_from(["auto", "none", "required"])),
    parallel_tool_calls=st.none() | st.booleans(),
    response_format=st.none() | st.just(JsonObjectFormat()),
    temperature=optional_floats,
    top_p=optional_floats,
    stop=st.lists(texts, max_size=3).map(tuple),
    seed=st.none() | st.integers(0, 2**31),
    max_tokens=st.none() | st.integers(1, 100_000),
    model=st.none() | texts,
    model_class=st.none() | texts,
    sensitivity=st.sampled_from(["public", "internal", "pii"]),
    caller=texts,
    metadata=st.dictionaries(texts, texts, max_size=2),
    request_id=texts,
)

Mutation = Callable[[ChatRequest], ChatRequest]
_replace = msgspec.structs.replace
MUTATIONS: dict[str, Mutation] = {
    "append message": lambda r: _replace(r, messages=(*r.messages, Message.text("user", "and?"))),
    "drop message": lambda r: _replace(
        r, messages=r.messages[1:] or (Message.text("user", "?"), Message.text("user", "?"))
    ),
    "edit last text": lambda r: _replace(
        r, messages=(*r.messages[:-1], Message(r.messages[-1].role, (*r.messages[-1].content, TextPart("!"))))
    ),
    "temperature": lambda r: _replace(r, temperature=(r.temperature or 0.0) + 0.5),
    "top_p": lambda r: _replace(r, top_p=(r.top_p or 0.0) + 0.25),
    "seed": lambda r: _replace(r, seed=(r.seed or 0) + 1),
    "max_tokens": lambda r: _replace(r, max_tokens=(r.max_tokens or 0) + 1),
    "stop": lambda r: _replace(r, stop=(*r.stop, "".join(r.stop) + "#")),
    "tool": lambda r: _replace(r, tools=(*r.tools, ToolSpec("".join(t.name for t in r.tools) + "_x"))),
    "format": lambda r: _replace(
        r, response_format=JsonSchemaFormat("s", {}) if r.response_format else JsonObjectFormat()
    ),
    "model": lambda r: _replace(r, model=(r.model or "") + "m"),
    "model_class": lambda r: _replace(r, model_class=(r.model_class or "") + "c"),
    "sensitivity": lambda r: _replace(r, sensitivity="public" if r.sensitivity != "public" else "pii"),
}


@given(requests)
def test_key_survives_serialization(request: ChatRequest) -> None:
    """A request decoded from its own JSON (as another process would see it) has the same key."""
    decoded = msgspec.json.decode(msgspec.json.encode(request), type=ChatRequest)
    assert key(decoded) == key(request)


@given(requests, texts, st.dictionaries(texts, texts, max_size=2), texts)
def test_routing_noise_never_changes_the_key(
    request: ChatRequest, caller: str, metadata: dict[str, str], rid: str
) -> None:
    """Any caller, metadata, request id or cache hint leaves the key of any request unchanged."""
    noisy = _replace(request, caller=caller, metadata=metadata, request_id=rid, cache_system=not request.cache_system)
    assert key(noisy) == key(request)


@given(requests, st.sampled_from(sorted(MUTATIONS)))
def test_semantic_mutation_always_changes_the_key(request: ChatRequest, mutation: str) -> None:
    """Any change of meaning applied to any request yields a different key."""
    assert key(MUTATIONS[mutation](request)) != key(request)


@given(requests, texts, texts)
def test_scopes_never_collide(request: ChatRequest, tenant: str, task: str) -> None:
    """Distinct (task, tenant) scopes of one request never share a key, whatever their text."""
    assert cache_key(request, task, tenant) != cache_key(request, task, tenant + "x")
    assert cache_key(request, task, tenant) != cache_key(request, task + "x", tenant)

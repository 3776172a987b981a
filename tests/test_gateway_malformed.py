"""Malformed requests through the real gateway: a 400 naming the field, never a 5xx, never paid for upstream.

The gateway serves only OpenAI's Chat Completions wire (no Anthropic-compatible endpoint), so the
official ``openai`` SDK is the client, and raw httpx2 sends the bodies the SDK will not build.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock.adapters.gateway._requests import MAX_BODY_DEPTH
from interlock.policies._tool_validate import MAX_SCHEMA_DEPTH
from tests.test_gateway import HELLO, KEY, WEATHER, Gateway, gateway_at

pytestmark = pytest.mark.anyio

HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
WINDOW = 100_000  # every model's context window in the test fleet


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The test fleet behind the gateway, open to any bearer."""
    async with gateway_at(tmp_path) as g:
        yield g


_DEEP = "__deep__"  # stands in a body for a value written out by hand


def _nested(levels: int) -> Any:
    """A schema of ``levels`` nested object properties (two JSON containers each)."""
    value: Any = {}
    for _ in range(levels - 1):
        value = {"properties": {"x": value}}
    return value


def _tool(parameters: Any, name: str = "lookup") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


BAD_SCHEMAS = {
    "not_json_schema": {"type": "object", "properties": {"city": {"type": "strnig"}}},
    "unresolvable_ref": {"type": "object", "properties": {"city": {"$ref": "#/$defs/city"}}},
    "remote_ref": {"type": "object", "properties": {"city": {"$ref": "https://example.com/city.json"}}},
    "too_deep": _nested(MAX_SCHEMA_DEPTH),  # two containers per level: past the limit, still decodable
}


async def _received(gw: Gateway) -> int:
    return int(gw.sim().stats("sim-oa-1").received) + int(gw.sim().stats("sim-an-1").received)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_SCHEMAS))
async def test_bad_tool_schema_is_400_before_any_upstream_call(gw: Gateway, case: str, stream: bool) -> None:
    """A tool schema that cannot be checked is a 400 naming its field and tool; nothing is sent upstream."""
    tools: Any = [WEATHER, _tool(BAD_SCHEMAS[case])]
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="default", messages=HELLO, tools=tools, stream=stream)
    assert info.value.param == "tools[1].function.parameters"
    assert info.value.type == "invalid_request_error"
    assert "tool 'lookup'" in info.value.message
    assert await _received(gw) == 0
    assert await gw.requests() == []  # refused at the edge: no request, so no ledger row


async def test_bad_tool_schema_problems_say_what_is_wrong(gw: Gateway) -> None:
    """The 400's message says which rule the schema breaks: the bad keyword's path, the dangling $ref, the depth."""
    said = {}
    async with gw.client() as client:
        for case, schema in BAD_SCHEMAS.items():
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(model="default", messages=HELLO, tools=[_tool(schema)])
            said[case] = info.value.message
    assert "not a valid JSON Schema at $.properties.city.type" in said["not_json_schema"]
    assert "$ref '#/$defs/city' does not resolve within the schema" in said["unresolvable_ref"]
    assert "$ref 'https://example.com/city.json' does not resolve" in said["remote_ref"]
    assert f"nested deeper than {MAX_SCHEMA_DEPTH} levels" in said["too_deep"]


@pytest.mark.parametrize(
    ("field", "param"),
    [("tools", "tools[0].function.parameters"), ("response_format", "response_format.json_schema.schema")],
)
async def test_5000_deep_body_is_400_naming_where(gw: Gateway, field: str, param: str) -> None:
    """A body nested 5,000 deep (past the decoder's stack) is a 400 naming the field it nests in, not a 500."""
    body: dict[str, Any] = {"model": "default", "messages": HELLO}
    if field == "tools":
        body["tools"] = [_tool(_DEEP)]
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": _DEEP}}
    deep = '{"a":' * 4999 + "1" + "}" * 4999  # written by hand: too deep for json.dumps too
    raw = json.dumps(body).replace(json.dumps(_DEEP), deep).encode()
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        answer = await http.post("/v1/chat/completions", content=raw, headers=HEADERS)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert f"nested deeper than {MAX_BODY_DEPTH} levels" in error["message"]
    assert await _received(gw) == 0


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [2**62, 2**64 + 1, WINDOW + 1])
async def test_token_limit_no_model_can_give_is_400(gw: Gateway, field: str, value: int) -> None:
    """A max_tokens (or max_completion_tokens) above every model's context window is a 400 naming it."""
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="default", messages=HELLO, **{field: value})
    assert info.value.param == field
    assert f"at most {WINDOW} tokens" in info.value.message
    assert await _received(gw) == 0


async def test_a_good_tool_schema_with_refs_still_passes(gw: Gateway) -> None:
    """A schema whose $ref points into its own $defs is served as before (the check refuses only what is broken)."""
    schema = {"$defs": {"city": {"type": "string"}}, "type": "object",
              "properties": {"city": {"$ref": "#/$defs/city"}}, "required": ["city"]}  # fmt: skip
    async with gw.client() as client:
        reply = await client.chat.completions.create(model="oa", messages=HELLO, tools=[_tool(schema)])
    assert reply.choices[0].finish_reason in {"stop", "tool_calls"}
    assert await _received(gw) == 1


# -- property: nothing malformed is a 5xx --------------------------------------------------------

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_PATHS: list[tuple[str | int, ...]] = [
    ("model",), ("messages",), ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"),
    ("stream",), ("stream_options",), ("tools",), ("tools", 0), ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters"), ("tools", 0, "function", "parameters", "properties"),
    ("tool_choice",), ("parallel_tool_calls",), ("response_format",), ("response_format", "json_schema", "schema"),
    ("temperature",), ("top_p",), ("stop",), ("seed",), ("max_tokens",), ("max_completion_tokens",), ("n",),
    ("user",), ("metadata",), ("extra_field",),
]


def _base() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {
        "model": "oa", "messages": [{"role": "user", "content": "hello"}], "tools": [_tool(schema)],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    }  # fmt: skip


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@st.composite
def _malformed(draw: st.DrawFn) -> bytes:
    """A body with one field set to random JSON, or a deep value, or a valid body cut or spliced with bytes."""
    kind = draw(st.sampled_from(["value", "value", "deep", "cut", "bytes"]))
    path = draw(st.sampled_from(_PATHS))
    if kind == "value":
        return json.dumps(_set(_base(), path, draw(_JSON))).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        return json.dumps(_set(_base(), path, _DEEP)).replace(json.dumps(_DEEP), "[" * depth + "]" * depth).encode()
    raw = json.dumps(_base()).encode()
    cut = draw(st.integers(0, len(raw)))
    if kind == "cut":
        return raw[:cut]
    return raw[:cut] + draw(st.binary(min_size=1, max_size=8)) + raw[cut:]


@pytest.fixture
def gw_thread(tmp_path: Path) -> Iterator[Gateway]:
    """The gateway on an event loop in a worker thread, so a synchronous hypothesis test can call it."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal, \
            portal.wrap_async_context_manager(gateway_at(tmp_path)) as g:  # fmt: skip
        yield g


def test_random_malformed_bodies_never_get_a_5xx(gw_thread: Gateway) -> None:
    """Random field values, deep values, cut and spliced bodies each get a 2xx or a 4xx in OpenAI's error shape."""
    with httpx2.Client(base_url=gw_thread.url, headers=HEADERS, timeout=10) as http:

        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
        @given(body=_malformed())
        def check(body: bytes) -> None:
            answer = http.post("/v1/chat/completions", content=body)
            assert answer.status_code < 500, (body[:300], answer.text[:300])
            if answer.status_code >= 400:
                assert set(answer.json()["error"]) == {"message", "type", "param", "code"}

        check()

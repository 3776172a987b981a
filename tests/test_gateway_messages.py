"""The gateway's Anthropic Messages dialect over real HTTP: the official anthropic SDK and httpx2 against uvicorn."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from interlock import ChatRequest, RouteEvent, StreamEvent
from interlock._types import (
    Finish,
    RefusalDelta,
    Route,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from interlock.adapters.gateway._app import ProviderState, VirtualKey
from interlock.adapters.gateway._messages_answers import Blocks, EventWriter
from interlock.adapters.simulator._server import Drop, RateLimit, Refusal
from interlock.policies._config import Config, parse_config
from tests.test_gateway import CONFIG, KEY, Gateway, gateway_at, serving, wait_for

pytestmark = pytest.mark.anyio

HELLO: Any = [{"role": "user", "content": "hello"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FORCED: Any = {"type": "tool", "name": "get_weather"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway with one virtual key, for tenant acme and caller svc."""
    async with gateway_at(tmp_path, virtual_keys={KEY: VirtualKey(tenant="acme", caller="svc")},
                          max_body_bytes=64 * 1024) as g:
        yield g


def client_of(url: str, key: str = KEY, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=retries)


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "provider"), [("oa", "p_openai"), ("an", "p_anthropic")])
async def test_text_answer_not_streamed(gw: Gateway, model: str, provider: str) -> None:
    """A plain answer is a message of one text block, end_turn, real usage and route headers, from either format."""
    async with client_of(gw.url) as client:
        raw = await client.messages.with_raw_response.create(model=model, max_tokens=100, messages=HELLO)
    message = await raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 12
    assert message.usage.input_tokens > 0
    assert message.model == model
    assert raw.headers["x-interlock-provider"] == provider
    assert raw.headers["request-id"] == raw.headers["x-interlock-request-id"]
    assert message.model_extra is not None
    assert message.model_extra["interlock"]["model"] == model
    (row,) = await gw.requests()
    assert (row.tenant, row.caller, row.outcome, row.model) == ("acme", "svc", "ok", model)
    assert message.id == f"msg_{row.request_id}"


@pytest.mark.parametrize("model", ["oa", "an"])
async def test_text_answer_streamed(gw: Gateway, model: str) -> None:
    """A stream is folded by the SDK's accumulator into the same message; its events come in Anthropic's order."""
    async with client_of(gw.url) as client, client.messages.stream(
        model=model, max_tokens=100, messages=HELLO
    ) as stream:
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    text = message.content[0].text  # type: ignore[union-attr]
    assert len(text.split()) == 12
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 12
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    assert kinds[-2] == "message_delta"
    (row,) = await gw.requests()
    assert row.outcome == "ok"


async def test_raw_stream_has_ping_named_events_and_header_comments(gw: Gateway) -> None:
    """On the wire every event has its event: line, a ping follows message_start, the route ends as SSE comments."""
    body = {"model": "oa", "max_tokens": 50, "messages": HELLO, "stream": True}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        response = await http.post("/v1/messages", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"]
    events = [block for block in response.text.split("\n\n") if block.startswith("event: ")]
    names = [e.split("\n", 1)[0].removeprefix("event: ") for e in events]
    assert names[:2] == ["message_start", "ping"]
    for event in events:  # the event line names the data's own type
        name, data = event.split("\n", 1)
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")
    start = json.loads(events[0].split("data: ", 1)[1])
    assert start["message"]["usage"] == {
        "input_tokens": None, "output_tokens": None,
        "cache_creation_input_tokens": None, "cache_read_input_tokens": None,
    }
    assert ": x-interlock-model: oa\n" in response.text


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
async def test_forced_tool_use(gw: Gateway, model: str, stream: bool) -> None:
    """A forced tool_choice comes back as a tool_use block with a JSON input; streamed, as input_json_delta."""
    async with client_of(gw.url) as client:
        if stream:
            async with client.messages.stream(
                model=model, max_tokens=100, messages=HELLO, tools=[WEATHER], tool_choice=FORCED
            ) as events:
                deltas = [e.delta.type async for e in events if e.type == "content_block_delta"]
                message = await events.get_final_message()
            assert "input_json_delta" in deltas
        else:
            message = await client.messages.create(
                model=model, max_tokens=100, messages=HELLO, tools=[WEATHER], tool_choice=FORCED
            )
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.id
    assert isinstance(call.input["city"], str)
    body = gw.sim().stats(f"sim-{model}-1").bodies[-1]
    if model == "oa":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    else:
        assert body["tool_choice"]["type"] == "tool"


@pytest.mark.parametrize("model", ["oa", "an"])
async def test_tool_result_round_trip_and_system_reach_the_provider(gw: Gateway, model: str) -> None:
    """A tool_use turn and its tool_result reach the provider as its own wire's call and result; so does system."""
    async with client_of(gw.url) as client:
        first = await client.messages.create(
            model=model, max_tokens=100, system="be brief", messages=HELLO, tools=[WEATHER], tool_choice=FORCED
        )
        call = next(b for b in first.content if b.type == "tool_use")
        turns: Any = [
            *HELLO,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ]
        second = await client.messages.create(
            model=model, max_tokens=100, system=[{"type": "text", "text": "be brief"}], messages=turns, tools=[WEATHER]
        )
    assert second.content
    assert second.stop_reason in ("end_turn", "tool_use")  # the simulator's tool behaviour is not ours to pin
    body = gw.sim().stats(f"sim-{model}-1").bodies[-1]
    if model == "oa":
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        assert any(m.get("role") == "tool" and m.get("tool_call_id") == call.id for m in body["messages"])
    else:
        assert body["system"][0]["text"] == "be brief"
        results = [b for m in body["messages"] for b in m["content"] if b.get("type") == "tool_result"]
        assert [(r["tool_use_id"], r["content"]) for r in results] == [(call.id, "sunny")]
    sent = gw.door.requests[-1]
    assert sent.messages[0].role == "system"
    assert isinstance(sent.messages[2].content[0], ToolCallPart)
    assert isinstance(sent.messages[3].content[0], ToolResultPart)
    assert len(await gw.requests()) == 2  # one ledger row per request


async def test_options_reach_the_canonical_request(gw: Gateway) -> None:
    """stop_sequences, temperature, top_p, metadata.user_id, cache_control and auto tool_choice are carried."""
    system: Any = [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    tool: Any = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    async with client_of(gw.url) as client:
        await client.messages.create(
            model="an", max_tokens=64, messages=HELLO, system=system, tools=[tool], stop_sequences=["END"],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True}, metadata={"user_id": "u-7"},
            extra_body={"temperature": 0.5, "top_p": 0.9},
        )
    sent = gw.door.requests[-1]
    assert (sent.stop, sent.temperature, sent.top_p, sent.max_tokens) == (("END",), 0.5, 0.9, 64)
    assert sent.metadata["user"] == "u-7"
    assert (sent.cache_system, sent.cache_tools, sent.parallel_tool_calls) == (True, True, False)
    body = gw.sim().stats("sim-an-1").bodies[-1]
    assert body["stop_sequences"] == ["END"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


async def test_images_reasoning_history_and_choice_modes_map_to_canonical(gw: Gateway) -> None:
    """An image block is an image part; an earlier turn's thinking is dropped; any and none map to required, none."""
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC"
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}}
    turns: Any = [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                          {"type": "text", "text": "a pixel"}]},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}]},
        {"role": "user", "content": "and now?"},
    ]
    async with client_of(gw.url) as client:
        await client.messages.create(model="an", max_tokens=20, messages=turns, tools=[WEATHER],
                                     tool_choice={"type": "any"})
        await client.messages.create(model="an", max_tokens=20, messages=HELLO, tools=[WEATHER],
                                     tool_choice={"type": "none"})
    forced, free = gw.door.requests
    assert [m.role for m in forced.messages] == ["user", "assistant", "user"]  # the reasoning-only turn is gone
    assert [type(p).__name__ for p in forced.messages[0].content] == ["TextPart", "ImagePart"]
    assert [type(p).__name__ for p in forced.messages[1].content] == ["TextPart"]
    assert (forced.tool_choice, free.tool_choice) == (ToolChoiceMode("required"), ToolChoiceMode("none"))
    body = gw.sim().stats("sim-an-1").bodies[0]
    assert body["messages"][0]["content"][1]["source"]["data"] == pixel


async def test_client_gone_mid_stream_cancels_upstream(gw: Gateway) -> None:
    """A client that leaves a Messages stream ends the upstream call; the request is recorded cancelled."""
    body = {"model": "slow", "max_tokens": 900, "messages": HELLO, "stream": True}
    async with (
        httpx2.AsyncClient(base_url=gw.url) as http,
        http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": KEY}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event: content_block_delta"):
                break

    async def recorded() -> bool:
        rows = await gw.requests()
        return [r.outcome for r in rows] == ["cancelled"] and gw.sim().stats("sim-slow-1").disconnected == 1

    await wait_for(recorded)


async def test_refusal_is_a_text_block_with_stop_reason_refusal(gw: Gateway) -> None:
    """An OpenAI-format refusal (delta.refusal) comes back as its text in a text block, stop_reason refusal."""
    gw.sim().script("sim-oa-1", [Refusal(text="I can't help with that."), Refusal(text="I can't help with that.")])
    async with client_of(gw.url) as client:
        message = await client.messages.create(model="oa", max_tokens=50, messages=HELLO)
        async with client.messages.stream(model="oa", max_tokens=50, messages=HELLO) as stream:
            streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert answer.stop_reason == "refusal"
        assert "".join(b.text for b in answer.content if b.type == "text") == "I can't help with that."


async def test_count_tokens_is_interlocks_estimate(gw: Gateway) -> None:
    """count_tokens answers an estimate that grows with the prompt, and calls no provider."""
    async with client_of(gw.url) as client:
        short = await client.messages.count_tokens(model="oa", messages=HELLO)
        long = await client.messages.count_tokens(
            model="oa", system="x" * 400, messages=HELLO, tools=[WEATHER]
        )
    assert short.input_tokens > 0
    assert long.input_tokens >= short.input_tokens + 100
    assert gw.sim().stats().received == 0
    assert await gw.requests() == []


# -- errors -------------------------------------------------------------------------------------


async def test_x_api_key_authenticates_and_a_wrong_key_is_401_in_anthropic_shape(gw: Gateway) -> None:
    """The SDK's x-api-key is the tenant's key; a wrong one is an AuthenticationError of type authentication_error."""
    wrong = "sk-ilk-wrong-key-abcdefghijklmnop"
    async with client_of(gw.url, wrong) as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(model="oa", max_tokens=10, messages=HELLO)
    assert info.value.status_code == 401
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": info.value.body["error"]["message"],  # type: ignore[index]
                  "details": {"error_code": "invalid_api_key"}},
        "request_id": info.value.request_id,
    }
    assert wrong[6:] not in str(info.value.body)
    assert info.value.response.headers["x-should-retry"] == "false"
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        missing = await http.post("/v1/messages/count_tokens", json={"model": "oa", "messages": HELLO})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("extra", "field", "kind"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type", "request_error"),
        ({"top_k": 5}, "top_k", "unsupported_parameter"),
        ({"thinking": {"type": "adaptive"}}, "thinking", "unsupported_parameter"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens", "invalid_value"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
         "messages[0].content[0]", "request_error"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name", "request_error"),
        ({"max_tokens": None}, "max_tokens", "request_error"),
        ({"temperature": 1.5}, "temperature", "request_error"),
        ({"tools": [{"name": "f", "input_schema": {"type": "nonsense"}}]}, "tools[0].input_schema", "request_error"),
    ],
)
async def test_bad_input_is_400_naming_the_field(gw: Gateway, extra: dict[str, Any], field: str, kind: str) -> None:
    """What cannot be carried is an invalid_request_error naming the field, refused before the door."""
    body: Any = {"model": "oa", "max_tokens": 10, "messages": HELLO, **extra}
    body = {k: v for k, v in body.items() if v is not None}
    async with client_of(gw.url) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    error: Any = info.value.body
    assert error["error"]["type"] == "invalid_request_error"
    assert field in error["error"]["message"]
    assert error["error"]["details"]["error_code"] == ("invalid_value" if kind == "request_error" else kind)
    assert await gw.requests() == []


async def test_unknown_model_is_not_found_error(gw: Gateway) -> None:
    """A model that names no job or model is a 404 NotFoundError of type not_found_error."""
    async with client_of(gw.url) as client:
        with pytest.raises(anthropic.NotFoundError) as info:
            await client.messages.create(model="claude-nope", max_tokens=10, messages=HELLO)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_rate_limit_is_rate_limit_error_with_retry_after(gw: Gateway) -> None:
    """Every candidate rate limited: a 429 RateLimitError of type rate_limit_error with the wait to honour."""
    gw.sim().script("sim-oa-1", [RateLimit(retry_after=3.0)])
    gw.sim().script("sim-an-1", [RateLimit(retry_after=3.0)])
    async with client_of(gw.url) as client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="default", max_tokens=10, messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    headers = info.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"], headers["x-should-retry"]) == ("3", "3000", "true")
    assert info.value.request_id == headers["x-interlock-request-id"]
    (row,) = await gw.requests()
    assert row.outcome == "error"
    assert row.request_id == info.value.request_id


async def test_stream_failing_mid_way_ends_with_an_error_event(gw: Gateway) -> None:
    """A stream that breaks after its start ends with event: error, which the SDK raises."""
    gw.sim().script("sim-oa-1", [Drop(after_tokens=3)])
    seen: list[str] = []
    async with client_of(gw.url) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model="strict", max_tokens=100, messages=HELLO) as stream:
                async for text in stream.text_stream:
                    seen.append(text)
    assert "".join(seen)
    body: Any = info.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] in ("overloaded_error", "api_error")
    (row,) = await gw.requests()
    assert row.outcome == "error"


# -- thinking, over a scripted door -------------------------------------------------------------


class Scripted:
    """A door that answers every request with ``events`` (a model that thinks, say)."""

    def __init__(self, events: Sequence[StreamEvent | RouteEvent]) -> None:
        self.events = events

    @property
    def config(self) -> Config:
        return parse_config(CONFIG)

    def send(
        self, request: ChatRequest, *, on_plan: Callable[[str], None] | None = None
    ) -> AsyncIterator[StreamEvent | RouteEvent]:
        return self._play()

    async def _play(self) -> AsyncIterator[StreamEvent | RouteEvent]:
        for event in self.events:
            yield event

    async def health(self) -> Mapping[str, ProviderState]:
        return {}


THINKING: list[StreamEvent | RouteEvent] = [
    ThinkingDelta("let me "),
    ThinkingDelta("think"),
    ThinkingDelta(signature="sig-1"),
    TextDelta("Calling é"),
    TextDelta("🌍."),
    ToolCallDelta(0, "toolu_1", "get_weather", '{"ci'),
    ToolCallDelta(0, None, None, 'ty": "Os'),
    ToolCallDone(0, "toolu_1", "get_weather", '{"city": "Oslo"}'),
    UsageEvent(Usage(input_tokens=7, output_tokens=9, cache_read_tokens=2)),
    Finish("tool_calls", provider_reason="tool_use"),
    RouteEvent(Route(model="an", provider="p_anthropic")),
]


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_text_and_tool_use_blocks_in_order(stream: bool) -> None:
    """Reasoning is a thinking block with its signature, before the text and the call; fragments are completed."""
    async with serving(Scripted(THINKING)) as url, client_of(url) as client:
        if stream:
            async with client.messages.stream(model="an", max_tokens=50, messages=HELLO) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(model="an", max_tokens=50, messages=HELLO)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    thinking, text, call = message.content
    assert (thinking.thinking, thinking.signature) == ("let me think", "sig-1")  # type: ignore[union-attr]
    assert text.text == "Calling é🌍."  # type: ignore[union-attr]
    assert (call.id, call.input) == ("toolu_1", {"city": "Oslo"})  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (7, 9, 2)


def test_adversarial_event_orders_keep_blocks_whole() -> None:
    """A call named late, a Done without fragments, and a refusal each land in a well-formed block sequence."""
    blocks = Blocks()
    for event in [
        ToolCallDelta(3, None, None, '{"a"'),  # a fragment before the call's name is known waits
        ToolCallDelta(3, "c1", "f", ": 1}"),
        ToolCallDone(5, "call_0", "g", ""),  # no fragment announced it: a whole block, input {}
        RefusalDelta("no."),
    ]:
        blocks.feed(event)
    blocks.close()
    content = blocks.content()
    assert [type(b).__name__ for b in content] == ["ToolUseOut", "ToolUseOut", "TextOut"]
    assert bytes(content[0].input) == b'{"a": 1}'  # type: ignore[union-attr]
    assert bytes(content[1].input) == b"{}"  # type: ignore[union-attr]
    assert content[1].id.startswith("call_")  # type: ignore[union-attr]
    assert content[1].id != "call_0"  # type: ignore[union-attr]  # a codec's stand-in repeats every turn
    assert blocks.refused


def test_every_started_block_stops_once_in_the_stream() -> None:
    """Each content_block_start has exactly one content_block_stop, in index order, before message_delta."""
    writer = EventWriter("msg_1", "1", "an")
    data = b"".join(writer.feed(e) for e in THINKING).decode()
    lines = [json.loads(x[6:]) for x in data.splitlines() if x.startswith("data: ")]
    starts = [x["index"] for x in lines if x["type"] == "content_block_start"]
    stops = [x["index"] for x in lines if x["type"] == "content_block_stop"]
    assert starts == stops == [0, 1, 2]
    kinds = [x["type"] for x in lines]
    assert kinds.index("message_delta") > max(i for i, k in enumerate(kinds) if k == "content_block_stop")
    assert lines[-1] == {"type": "message_stop"}


async def test_a_routing_miss_under_messages_answers_in_anthropics_shape(gw: Gateway) -> None:
    """A wrong method on ``/v1/messages`` is a 405 an Anthropic client can read, with ``Allow``."""
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        response = await http.get("/v1/messages", headers={"x-api-key": KEY})
    assert response.status_code == 405
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "POST" in response.headers["allow"]

"""The OpenAI Responses API dialect over real HTTP: the official openai SDK against uvicorn and the simulator fleet."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai._models import construct_type
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from interlock import (
    Finish,
    Message,
    Route,
    RouteEvent,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from interlock.adapters.gateway._app import VirtualKey
from interlock.adapters.gateway._responses import ResponseWriter, Shell
from interlock.adapters.gateway._responses_store import MemoryKept, ResponseStore, Stored
from interlock.adapters.gateway._responses_wire import REQUEST_DECODER, ResponseOut, TextConfigOut, TextFormatIn
from interlock.adapters.simulator._server import Drop, NoUsage, RateLimit, Refusal
from tests.test_gateway import KEY, Gateway, gateway_at

pytestmark = pytest.mark.anyio

OTHER_KEY = "sk-ilk-beta-0123456789abcdef"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
FORCE_WEATHER: Any = {"type": "function", "name": "get_weather"}
SCHEMA: Any = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway with two keys: tenant acme (``KEY``) and tenant beta (``OTHER_KEY``)."""
    keys = {KEY: VirtualKey(tenant="acme", caller="svc"), OTHER_KEY: VirtualKey(tenant="beta", caller="svc")}
    async with gateway_at(tmp_path, virtual_keys=keys, max_body_bytes=64 * 1024) as g:
        yield g


def raw_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), "")
        data = "".join(ln[6:] for ln in lines if ln.startswith("data: "))
        if data:
            out.append((name, json.loads(data)))
    return out


# -- text -------------------------------------------------------------------------------------------


async def test_non_stream_text_answer_has_usage_route_and_ledger_row(gw: Gateway) -> None:
    """A whole answer is a ``response`` with one message item, usage, route headers and its tenant's ledger row."""
    async with gw.client() as client:
        raw = await client.responses.with_raw_response.create(model="default", input="hello", max_output_tokens=50)
    reply = raw.parse()
    assert reply.object == "response"
    assert reply.status == "completed"
    assert reply.model == "oa"
    assert reply.output_text
    assert [item.type for item in reply.output] == ["message"]
    assert reply.usage is not None
    assert reply.usage.output_tokens == 12
    assert reply.usage.total_tokens == reply.usage.input_tokens + 12
    assert reply.max_output_tokens == 50
    assert raw.headers["x-interlock-model"] == "oa"
    assert raw.headers["x-interlock-provider"] == "p_openai"
    assert reply.model_extra is not None
    assert reply.model_extra["interlock"]["model"] == "oa"
    (row,) = await gw.requests()
    assert (row.tenant, row.caller, row.outcome) == ("acme", "svc", "ok")
    assert reply.id == f"resp_{row.request_id}"
    assert raw.headers["x-interlock-request-id"] == row.request_id


async def test_stream_sends_the_typed_event_sequence_in_order(gw: Gateway) -> None:
    """A stream is created, in_progress, one message item's part and deltas, their dones, then completed."""
    async with gw.client() as client:
        stream = await client.responses.create(model="default", input="hello", stream=True)
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 1
    head = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds == [*head, *["response.output_text.delta"] * len(deltas), *tail, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(d.delta for d in deltas)  # type: ignore[union-attr]
    done = events[-4]
    assert done.type == "response.output_text.done"
    assert done.text == text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == text
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 12
    assert events[0].type == "response.created"
    assert events[0].response.id == completed.response.id
    assert events[0].response.output == []
    (row,) = await gw.requests()
    assert row.outcome == "ok"
    assert completed.response.id == f"resp_{row.request_id}"


async def test_stream_helper_accumulates_the_final_response(gw: Gateway) -> None:
    """``client.responses.stream`` accepts the sequence and assembles the same text as the deltas."""
    async with gw.client() as client, client.responses.stream(model="oa", input="hello") as stream:
        pieces = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.output_text == "".join(pieces)
    assert final.status == "completed"


async def test_raw_stream_names_each_event_and_ends_with_route_comments(gw: Gateway) -> None:
    """On the wire each event's ``event:`` line names its type; headers and trailing comments carry the route."""
    body = {"model": "default", "input": [{"role": "user", "content": "hello"}], "stream": True}
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        response = await http.post("/v1/responses", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-interlock-request-id"]
    assert response.headers["x-interlock-first-choice"] == "oa"
    events = raw_events(response.text)
    assert all(name == data["type"] for name, data in events)
    assert events[-1][1]["response"]["interlock"]["provider"] == "p_openai"
    assert ": x-interlock-model: oa\n" in response.text
    assert "[DONE]" not in response.text


async def test_unprefixed_route_is_served_too(gw: Gateway) -> None:
    """``/responses`` answers like ``/v1/responses``, as other gateways accept."""
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        response = await http.post(
            "/responses", json={"model": "oa", "input": "hi"}, headers={"authorization": f"Bearer {KEY}"}
        )
    assert response.status_code == 200
    assert response.json()["object"] == "response"


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_format_provider_serves_a_responses_request(gw: Gateway, stream: bool) -> None:
    """A Responses request pinned to the Anthropic-format model is answered in the Responses shape."""
    async with gw.client() as client:
        if stream:
            async with client.responses.stream(model="an", input="hello", instructions="be brief") as s:
                reply = await s.get_final_response()
        else:
            reply = await client.responses.create(model="an", input="hello", instructions="be brief")
    assert reply.model == "an"
    assert reply.output_text
    assert reply.model_extra is not None
    assert reply.model_extra["interlock"]["provider"] == "p_anthropic"
    body = gw.sim().stats("sim-an-1").bodies[-1]
    assert "be brief" in json.dumps(body.get("system"))
    (row,) = await gw.requests()
    assert (row.provider, row.outcome) == ("p_anthropic", "ok")


@pytest.mark.parametrize("stream", [False, True])
async def test_refusal_is_a_refusal_content_part_apart_from_the_text(gw: Gateway, stream: bool) -> None:
    """A refusal after some words is a ``refusal`` part beside the ``output_text`` part, never in the text."""
    gw.sim().script("sim-oa-1", [Refusal(text="I can't help with that.", after_tokens=2)])
    async with gw.client() as client:
        if stream:
            async with client.responses.stream(model="oa", input="hello") as s:
                kinds = [e.type async for e in s]
                reply = await s.get_final_response()
            assert kinds.count("response.content_part.added") == 2
            assert "response.refusal.delta" in kinds
            assert kinds.index("response.output_text.done") < kinds.index("response.refusal.delta")
        else:
            reply = await client.responses.create(model="oa", input="hello")
    (message,) = reply.output
    assert message.type == "message"
    assert [part.type for part in message.content] == ["output_text", "refusal"]
    assert message.content[1].refusal == "I can't help with that."  # type: ignore[union-attr]
    assert "help" not in reply.output_text


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_usage_is_null_not_zeros(gw: Gateway, stream: bool) -> None:
    """Usage the provider did not report is null on the response, and the SDK accepts it."""
    gw.sim().script("sim-oa-1", [NoUsage()])
    async with gw.client() as client:
        if stream:
            async with client.responses.stream(model="oa", input="hello") as s:
                reply = await s.get_final_response()
        else:
            reply = await client.responses.create(model="oa", input="hello")
    assert reply.output_text
    assert reply.usage is None
    assert reply.model_extra is not None
    assert reply.model_extra["interlock"]["usage_estimated"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_token_limit_ends_incomplete(gw: Gateway, stream: bool) -> None:
    """An answer cut by ``max_output_tokens`` is ``incomplete`` with its reason; a stream ends so too."""
    async with gw.client() as client:
        if stream:
            events = [e async for e in await client.responses.create(
                model="an", input="hello", max_output_tokens=3, stream=True
            )]
            assert events[-1].type == "response.incomplete"
            reply = events[-1].response
        else:
            reply = await client.responses.create(model="oa", input="hello", max_output_tokens=3)
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert reply.usage is not None
    assert reply.usage.output_tokens == 3


# -- tools ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
async def test_forced_tool_choice_returns_a_function_call_item(gw: Gateway, model: str, stream: bool) -> None:
    """A forced function comes back as a function_call item with a unique call id and JSON arguments."""
    async with gw.client() as client:
        if stream:
            async with client.responses.stream(
                model=model, input="weather?", tools=[WEATHER], tool_choice=FORCE_WEATHER
            ) as s:
                events = [e async for e in s]
                reply = await s.get_final_response()
            kinds = [e.type for e in events]
            assert "response.function_call_arguments.done" in kinds
            assert kinds.index("response.function_call_arguments.done") < kinds.index("response.output_item.done")
        else:
            reply = await client.responses.create(
                model=model, input="weather?", tools=[WEATHER], tool_choice=FORCE_WEATHER
            )
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert reply.tool_choice.type == "function"  # type: ignore[union-attr]
    assert reply.tools[0].type == "function"
    sent = gw.door.requests[-1]
    assert sent.tools[0].name == "get_weather"


async def test_function_call_output_round_trip(gw: Gateway) -> None:
    """The call and its output sent back as items become a tool call and its result, and an answer comes back."""
    async with gw.client() as client:
        first = await client.responses.create(model="oa", input="weather?", tools=[WEATHER], tool_choice=FORCE_WEATHER)
        call = next(item for item in first.output if item.type == "function_call")
        items: Any = [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ]
        second = await client.responses.create(model="oa", input=items, tools=[WEATHER], tool_choice="none")
    assert second.status == "completed"
    assert second.output_text
    messages = gw.door.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].content == (ToolCallPart(call.call_id, "get_weather", call.arguments),)
    assert messages[2].content == (ToolResultPart(call.call_id, "sunny"),)
    body = gw.sim().stats("sim-oa-1").bodies[-1]
    assert any(m.get("role") == "tool" and m.get("tool_call_id") == call.call_id for m in body["messages"])
    assert body["tool_choice"] == "none"


async def test_json_schema_text_format_reaches_the_provider(gw: Gateway) -> None:
    """``text.format`` json_schema becomes the provider's response_format, and is echoed on the response."""
    fmt: Any = {"type": "json_schema", "name": "reply", "schema": SCHEMA, "strict": True}
    async with gw.client() as client:
        reply = await client.responses.create(model="oa", input="answer in JSON", text={"format": fmt})
    assert reply.status == "completed"
    body = gw.sim().stats("sim-oa-1").bodies[-1]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert reply.text is not None
    assert reply.text.format is not None
    assert reply.text.format.type == "json_schema"


async def test_json_object_format_temperature_and_metadata_are_carried(gw: Gateway) -> None:
    """json_object, temperature, top_p, metadata and instructions reach the canonical request and the provider."""
    async with gw.client() as client:
        reply = await client.responses.create(
            model="oa",
            input="JSON please",
            instructions="reply in JSON",
            text={"format": {"type": "json_object"}},
            temperature=0.3,
            top_p=0.9,
            metadata={"ticket": "t-1"},
        )
    assert reply.metadata == {"ticket": "t-1"}
    sent = gw.door.requests[-1]
    assert sent.messages[0] == Message(role="system", content=(TextPart("reply in JSON"),))
    assert (sent.temperature, sent.top_p, sent.metadata["ticket"]) == (0.3, 0.9, "t-1")
    body = gw.sim().stats("sim-oa-1").bodies[-1]
    assert body["response_format"] == {"type": "json_object"}


# -- stored responses -------------------------------------------------------------------------------


async def test_previous_response_id_continues_and_get_returns_it(gw: Gateway) -> None:
    """A stored response is continued by ``previous_response_id`` (without its instructions) and returned by GET."""
    async with gw.client() as client:
        first = await client.responses.create(model="oa", input="my name is Ada", instructions="be terse")
        second = await client.responses.create(model="oa", input="what is my name?", previous_response_id=first.id)
        fetched = await client.responses.retrieve(first.id)
        fetched_second = await client.responses.retrieve(second.id)
    messages = gw.door.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert messages[0].plain_text == "my name is Ada"
    assert messages[1].plain_text == first.output_text
    assert messages[2].plain_text == "what is my name?"
    assert second.previous_response_id == first.id
    assert fetched.id == first.id
    assert fetched.output_text == first.output_text
    assert fetched_second.previous_response_id == first.id


async def test_streamed_response_is_stored_and_continued(gw: Gateway) -> None:
    """A streamed response, once completed, is stored: a continuation replays its function call."""
    async with gw.client() as client:
        tools: Any = [WEATHER]
        async with client.responses.stream(model="an", input="weather?", tools=tools, tool_choice=FORCE_WEATHER) as s:
            first = await s.get_final_response()
        call = next(item for item in first.output if item.type == "function_call")
        output: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
        second = await client.responses.create(
            model="an", input=output, previous_response_id=first.id, tools=[WEATHER], tool_choice="none"
        )
    assert second.status == "completed"
    messages = gw.door.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert isinstance(messages[1].content[-1], ToolCallPart)
    assert messages[1].content[-1].id == call.call_id


async def test_unknown_previous_response_is_404_naming_the_param(gw: Gateway) -> None:
    """An unknown ``previous_response_id`` is a 404 in OpenAI's shape before any provider is called."""
    async with gw.client() as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.create(model="oa", input="hi", previous_response_id="resp_nope")
    assert info.value.param == "previous_response_id"
    assert info.value.type == "invalid_request_error"
    assert gw.sim().stats("sim-oa-1").received == 0


async def test_store_is_tenant_scoped_and_store_false_keeps_nothing(gw: Gateway) -> None:
    """Another tenant cannot GET or continue a response; ``store=False`` is never kept."""
    async with gw.client() as client, gw.client(OTHER_KEY) as other:
        kept = await client.responses.create(model="oa", input="hi")
        unkept = await client.responses.create(model="oa", input="hi", store=False)
        assert unkept.store is False
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(kept.id)
        with pytest.raises(openai.NotFoundError):
            await other.responses.create(model="oa", input="hi", previous_response_id=kept.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unkept.id)
        assert (await client.responses.retrieve(kept.id)).id == kept.id


async def test_store_drops_the_least_recently_used_past_its_capacity() -> None:
    """The in-process stand-in keeps at most its capacity; a read refreshes a response's place."""
    store = ResponseStore(MemoryKept(capacity=2))

    def stored(rid: str) -> Stored:
        body = ResponseOut(
            id=rid, created_at=0, status="completed", instructions=None, max_output_tokens=None, metadata={},
            model="m", output=[], parallel_tool_calls=True, previous_response_id=None, store=True,
            temperature=None, text=TextConfigOut(TextFormatIn()), tool_choice="auto", tools=[], top_p=None,
        )
        return Stored(body, ())

    await store.put("t", stored("a"))
    await store.put("t", stored("b"))
    assert await store.get("t", "a") is not None  # "b" is now the least recently used
    await store.put("t", stored("c"))
    assert await store.get("t", "b") is None
    assert await store.get("t", "a") is not None
    assert await store.get("t", "c") is not None
    assert await store.get("other", "a") is None


# -- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True}, "background"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[1].type"),
        ({"reasoning": {"effort": "high", "summary": "auto"}}, "reasoning.summary"),
        ({"truncation": "auto"}, "truncation"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ],
)
async def test_unsupported_feature_is_400_naming_the_field(gw: Gateway, extra: dict[str, Any], param: str) -> None:
    """A feature interlock cannot honour is a 400 ``unsupported_parameter`` naming it, and nothing is sent upstream."""
    body = {"model": "oa", "input": "hi", **extra}
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(**body)
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == param
    assert gw.sim().stats("sim-oa-1").received == 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[1].call_id"),
        ({"input": []}, "input"),
        ({"temperature": 3}, "temperature"),
        ({"tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
        ({"tools": [{**WEATHER, "parameters": {"type": "objekt"}}]}, "tools[0].parameters"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
    ],
)
async def test_malformed_request_is_400_naming_the_field(gw: Gateway, extra: dict[str, Any], param: str) -> None:
    """A malformed request is a 400 whose ``param`` names the field as it is on the wire."""
    if param == "input[1].call_id":
        extra = {"input": [{"role": "user", "content": "hi"}, *extra["input"]]}
    body = {"model": "oa", "input": "hi", **extra}
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(**body)
    assert info.value.param == param
    assert gw.sim().stats("sim-oa-1").received == 0


async def test_unknown_model_and_missing_key_use_the_error_table(gw: Gateway) -> None:
    """An unknown job is the table's 404 model_not_found; a wrong key its 401."""
    async with gw.client() as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.create(model="no-such-job", input="hi")
    assert info.value.code == "model_not_found"
    async with gw.client("sk-wrong-0123456789abcdef") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.responses.create(model="oa", input="hi")


@pytest.mark.parametrize("stream", [False, True])
async def test_failure_before_the_first_token_is_a_real_status(gw: Gateway, stream: bool) -> None:
    """Rate limits on every candidate are the table's 429 with its retry hint, streamed or not, and one ledger row."""
    gw.sim().script("sim-oa-1", [RateLimit(retry_after=3.0)])
    gw.sim().script("sim-an-1", [RateLimit(retry_after=3.0)])
    async with gw.client() as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.responses.create(model="default", input="hello", stream=stream)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "3"
    (row,) = await gw.requests()
    assert row.outcome == "error"


async def test_stream_failing_after_start_ends_with_error_and_failed(gw: Gateway) -> None:
    """A stream that breaks after its first token sends an ``error`` event, then ``response.failed``."""
    gw.sim().script("sim-oa-1", [Drop(after_tokens=3)])
    async with gw.client() as client:
        stream = await client.responses.create(model="strict", input="hello", stream=True)
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (row,) = await gw.requests()
    assert row.outcome != "ok"


# -- the writer, on events no simulator sends ---------------------------------------------------------


async def test_writer_sequence_for_reasoning_text_and_interleaved_calls_is_accepted_by_the_sdk() -> None:
    """Reasoning, text and two interleaved parallel calls make items the SDK's own accumulator completes."""
    wire = REQUEST_DECODER.decode(b'{"model": "m", "input": "hi"}')
    writer = ResponseWriter(Shell(wire, [], "rid", 0), None)
    canonical: list[StreamEvent | RouteEvent] = [
        ThinkingDelta("let me think"),
        TextDelta("checking ü"),
        ToolCallDelta(0, "call_a", "get_weather", '{"city"'),
        ToolCallDelta(1, "call_b", "get_time", "{}"),
        ToolCallDelta(0, None, None, ':"Oslo"}'),
        ToolCallDone(1, "call_b", "get_time", "{}"),
        ToolCallDone(0, "call_a", "get_weather", '{"city":"Oslo"}'),
        UsageEvent(Usage(input_tokens=5, output_tokens=7, cache_read_tokens=2)),
        Finish("tool_calls"),
        RouteEvent(Route(model="m", provider="p")),
    ]
    body = b"".join(writer.feed(event) for event in canonical) + await writer.end()  # end: the final event
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    parsed = []
    for _, data in raw_events(body.decode()):
        event = construct_type(type_=ResponseStreamEvent, value=data)
        parsed += state.handle_event(event)  # type: ignore[arg-type]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    final = state._completed_response
    assert final is not None
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [("call_a", '{"city":"Oslo"}'), ("call_b", "{}")]
    assert final.output_text == "checking ü"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (7, 2)


async def test_a_stored_response_outlives_its_gateway_and_is_continued_by_the_next(tmp_path: Path) -> None:
    """Responses are kept in the door's state store: a gateway started after the first one closed (a
    restart, or another worker of the host) returns the streamed response and continues from it."""
    keys = {KEY: VirtualKey(tenant="acme", caller="svc")}
    async with (
        gateway_at(tmp_path, virtual_keys=keys) as first,
        first.client() as client,
        client.responses.stream(model="oa", input="remember the word tangerine") as stream,
    ):
        kept = await stream.get_final_response()
    async with gateway_at(tmp_path, virtual_keys=keys) as second, second.client() as client:
        again = await client.responses.retrieve(kept.id)
        follow = await client.responses.create(model="oa", input="which word?", previous_response_id=kept.id)
        sim_bodies = second.sim().stats("sim-oa-1").bodies
    assert again.id == kept.id
    assert again.output_text == kept.output_text
    assert follow.status == "completed"
    sent = json.dumps(sim_bodies[-1]["messages"])
    assert "remember the word tangerine" in sent  # the continuation carries the stored conversation
    assert kept.output_text in sent

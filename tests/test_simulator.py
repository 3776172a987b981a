"""The provider simulator, driven over real HTTP by plain httpx2 clients (never interlock's codecs)."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from interlock._clock import FakeClock
from interlock._errors import ConfigError
from interlock.adapters.providers._sse import SSEEvent, SSEParser
from interlock.adapters.simulator._behaviour import VOCAB, draw, draw_plan, request_rng, sample_arguments
from interlock.adapters.simulator._server import (
    Behaviour,
    Chance,
    Drop,
    Fixed,
    LogNormal,
    Malformed,
    Normal,
    Outage,
    Overloaded,
    RateLimit,
    Reset,
    ServerError,
    SimConfig,
    Simulator,
    StallFirstToken,
    StallHeaders,
    Unavailable,
    Uniform,
    dead_url,
    default_config,
    load_config,
    main,
)

pytestmark = pytest.mark.anyio

PROMPT = "Say something about gateways, please."  # 37 characters: 10 input tokens
CONFIG = SimConfig(
    models={
        "sim-a": Behaviour(output_tokens=Fixed(6), cached_fraction=0.5),
        "sim-notools": Behaviour(output_tokens=Fixed(4), tool_call_p=0.0),
    },
    default=Behaviour(output_tokens=Fixed(3)),
    keep_bodies=2,
)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}, "days": {"type": "integer"}},
    "required": ["city", "unit"],
}


# --- helpers ----------------------------------------------------------------------------


def openai_body(model: str = "sim-a", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    """An OpenAI chat completions request body."""
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream, **extra}


def anthropic_body(model: str = "sim-a", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    """An Anthropic messages request body."""
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}], "stream": stream,
            **extra}


def gemini_body(**extra: Any) -> dict[str, Any]:
    """A Gemini generateContent request body."""
    return {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], **extra}


def gemini_path(model: str = "sim-a", *, stream: bool = False) -> str:
    """The Gemini path for ``model``."""
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{method}"


def events(raw: bytes) -> list[SSEEvent]:
    """Every SSE event of a whole body; the body must end on an event boundary."""
    parser = SSEParser()
    out = parser.feed(raw)
    assert not parser.has_pending, raw[-200:]
    return out + parser.close()


def vocab_text(text: str) -> bool:
    """True if ``text`` is words of the simulator's vocabulary joined by single spaces."""
    return bool(text) and all(word in VOCAB for word in text.split(" "))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.002)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator with the test fleet on the real clock."""
    async with Simulator(CONFIG) as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    """A plain HTTP client."""
    async with httpx2.AsyncClient(timeout=10.0) as http:
        yield http


# --- OpenAI -------------------------------------------------------------------------------


async def test_openai_stream_is_well_formed_and_ends_with_done(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """An OpenAI stream is role chunk, content chunks, a finish chunk, a usage chunk and [DONE]."""
    body = openai_body(stream=True, stream_options={"include_usage": True})
    resp = await client.post(sim.url + "/v1/chat/completions", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    evs = events(resp.content)
    assert evs[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in evs[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "sim-a" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(texts) == 6
    assert vocab_text("".join(texts))
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == 10
    assert usage["completion_tokens"] == 6
    assert usage["total_tokens"] == 16
    assert usage["prompt_tokens_details"]["cached_tokens"] == 5


async def test_openai_stream_without_include_usage_has_no_usage_chunk(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    """Without stream_options.include_usage no chunk carries a usage key."""
    resp = await client.post(sim.url + "/v1/chat/completions", json=openai_body(stream=True))
    chunks = [json.loads(e.data) for e in events(resp.content)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_openai_non_stream_completion(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A non-stream request gets a chat.completion with the text, finish reason and usage."""
    resp = await client.post(sim.url + "/v1/chat/completions", json=openai_body())
    data = resp.json()
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split(" ")) == 6
    assert vocab_text(choice["message"]["content"])
    assert data["usage"]["completion_tokens"] == 6


async def test_openai_max_tokens_truncates_with_length(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """max_completion_tokens below the planned length cuts the answer and reports finish_reason length."""
    data = (await client.post(sim.url + "/v1/chat/completions", json=openai_body(max_completion_tokens=2))).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 2


# --- Anthropic ----------------------------------------------------------------------------


async def test_anthropic_stream_event_sequence(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """An Anthropic stream names each event after its data type, in the documented order."""
    resp = await client.post(sim.url + "/v1/messages", json=anthropic_body(stream=True))
    evs = events(resp.content)
    names = [e.event for e in evs]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 6,
                     "content_block_stop", "message_delta", "message_stop"]
    datas = [json.loads(e.data) for e in evs]
    assert all(d["type"] == e.event for d, e in zip(datas, evs, strict=True))
    start = datas[0]["message"]
    assert start["content"] == []
    assert start["role"] == "assistant"
    assert start["model"] == "sim-a"
    assert start["usage"]["input_tokens"] == 5
    assert start["usage"]["cache_read_input_tokens"] == 5
    assert vocab_text("".join(d["delta"]["text"] for d in datas[3:9]))
    assert datas[-2]["delta"]["stop_reason"] == "end_turn"
    assert datas[-2]["usage"]["output_tokens"] == 6


async def test_anthropic_non_stream_message(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A non-stream request gets a Message with one text block and cache reads outside input_tokens."""
    data = (await client.post(sim.url + "/v1/messages", json=anthropic_body(max_tokens=4))).json()
    assert data["type"] == "message"
    assert data["stop_reason"] == "max_tokens"
    assert [b["type"] for b in data["content"]] == ["text"]
    assert vocab_text(data["content"][0]["text"])
    assert data["usage"] == {"input_tokens": 5, "output_tokens": 4, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 5}


# --- Gemini -------------------------------------------------------------------------------


async def test_gemini_stream_frames_end_without_sentinel(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A Gemini alt=sse stream is CRLF-framed responses; the last has STOP and usageMetadata."""
    resp = await client.post(sim.url + gemini_path(stream=True), json=gemini_body())
    assert b"\r\n\r\n" in resp.content
    assert b"[DONE]" not in resp.content
    frames = [json.loads(e.data) for e in events(resp.content)]
    texts = [f["candidates"][0]["content"]["parts"][0]["text"] for f in frames]
    assert vocab_text("".join(texts))
    assert len(frames) == 7
    last = frames[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["modelVersion"] == "sim-a"
    assert last["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 6, "totalTokenCount": 16,
                                     "cachedContentTokenCount": 5}
    assert all("finishReason" not in f["candidates"][0] for f in frames[:-1])


async def test_gemini_non_stream_takes_model_from_path(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """generateContent under /v1beta and under /v1 takes the model from the path."""
    for path in ("/v1beta/models/sim-a:generateContent", "/v1/models/sim-a:generateContent"):
        data = (await client.post(sim.url + path, json=gemini_body())).json()
        candidate = data["candidates"][0]
        assert candidate["finishReason"] == "STOP"
        assert candidate["content"]["role"] == "model"
        assert len(candidate["content"]["parts"][0]["text"].split(" ")) == 6
    assert sim.stats("sim-a").received == 2


async def test_gemini_stream_needs_alt_sse_and_a_known_method(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """Streaming without alt=sse is a 400 and an unknown method a 404, both in Google's error shape."""
    no_sse = await client.post(sim.url + "/v1beta/models/sim-a:streamGenerateContent", json=gemini_body())
    assert no_sse.status_code == 400
    assert no_sse.json()["error"]["status"] == "INVALID_ARGUMENT"
    unknown = await client.post(sim.url + "/v1beta/models/sim-a:countTokens", json=gemini_body())
    assert unknown.status_code == 404
    assert unknown.json()["error"]["status"] == "NOT_FOUND"


async def test_model_lists(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """/v1/models lists the fleet for OpenAI and Anthropic clients; /v1beta/models for Gemini's."""
    listed = (await client.get(sim.url + "/v1/models")).json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [m["id"] for m in listed["data"]] == ["sim-a", "sim-notools"]
    assert all(m["object"] == "model" and m["type"] == "model" for m in listed["data"])
    gemini = (await client.get(sim.url + "/v1beta/models")).json()
    assert [m["name"] for m in gemini["models"]] == ["models/sim-a", "models/sim-notools"]


async def test_bad_body_is_a_400_in_the_format_shape(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A body that is not a valid request gets 400 with the provider's error body."""
    oa = await client.post(sim.url + "/v1/chat/completions", content=b"{not json")
    assert oa.status_code == 400
    assert oa.json()["error"]["type"] == "invalid_request_error"
    an = await client.post(sim.url + "/v1/messages", json={"messages": []})
    assert an.status_code == 400
    assert an.json()["error"]["type"] == "invalid_request_error"


# --- tool calls ---------------------------------------------------------------------------


# Tools are called when the user's turn names one (tool_choice auto): this one asks about the weather.
ASKS_WEATHER: Any = [{"role": "user", "content": "What is the weather in Oslo?"}]


def _assert_weather_args(args: dict[str, Any]) -> None:
    assert isinstance(args["city"], str)
    assert args["unit"] in ("c", "f")


async def test_openai_tool_calls_stream_and_non_stream(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A user asking for an offered tool gets tool_calls with valid JSON arguments and finish_reason tool_calls."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    body = openai_body(tools=tools, messages=ASKS_WEATHER)
    data = (await client.post(sim.url + "/v1/chat/completions", json=body)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    _assert_weather_args(json.loads(call["function"]["arguments"]))
    resp = await client.post(sim.url + "/v1/chat/completions", json={**body, "stream": True})
    chunks = [json.loads(e.data) for e in events(resp.content)[:-1]]
    frags = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert frags[0]["id"].startswith("call_")
    assert frags[0]["function"]["name"] == "get_weather"
    assert all(f["index"] == 0 for f in frags)
    assert len(frags) == 3
    _assert_weather_args(json.loads("".join(f["function"]["arguments"] for f in frags)))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_anthropic_tool_use_stream_and_non_stream(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A user asking for an offered tool gets tool_use blocks (input_json_delta when streamed), stop_reason tool_use."""
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    body = anthropic_body(tools=tools, messages=ASKS_WEATHER)
    data = (await client.post(sim.url + "/v1/messages", json=body)).json()
    (block,) = data["content"]
    assert block["type"] == "tool_use"
    assert block["name"] == "get_weather"
    assert data["stop_reason"] == "tool_use"
    _assert_weather_args(block["input"])
    resp = await client.post(sim.url + "/v1/messages", json={**body, "stream": True})
    datas = [json.loads(e.data) for e in events(resp.content)]
    assert [d["type"] for d in datas] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                          "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert datas[2]["content_block"]["type"] == "tool_use"
    assert datas[2]["content_block"]["input"] == {}
    _assert_weather_args(json.loads("".join(d["delta"]["partial_json"] for d in datas[3:5])))
    assert datas[-2]["delta"]["stop_reason"] == "tool_use"


async def test_gemini_function_call_stream_and_non_stream(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A user asking for a declared function gets a functionCall part with finish reason STOP."""
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_SCHEMA}]}]
    contents = [{"role": "user", "parts": [{"text": "What is the weather in Oslo?"}]}]
    for stream in (False, True):
        body = gemini_body(tools=tools, contents=contents)
        resp = await client.post(sim.url + gemini_path(stream=stream), json=body)
        data = json.loads(events(resp.content)[-1].data) if stream else resp.json()
        candidate = data["candidates"][0]
        call = candidate["content"]["parts"][0]["functionCall"]
        assert call["name"] == "get_weather"
        assert candidate["finishReason"] == "STOP"
        _assert_weather_args(call["args"])


async def test_tool_choice_forces_and_forbids_tools(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A forcing tool_choice gets the named tool even when the behaviour never calls; none gets text."""
    tools = [{"type": "function", "function": {"name": "a", "parameters": {}}},
             {"type": "function", "function": {"name": "b", "parameters": WEATHER_SCHEMA}}]
    url = sim.url + "/v1/chat/completions"
    forced = {"type": "function", "function": {"name": "b"}}
    data = (await client.post(url, json=openai_body("sim-notools", tools=tools, tool_choice=forced))).json()
    assert [c["function"]["name"] for c in data["choices"][0]["message"]["tool_calls"]] == ["b"]
    auto = (await client.post(url, json=openai_body("sim-notools", tools=tools))).json()
    assert auto["choices"][0]["finish_reason"] == "stop"
    none = (await client.post(url, json=openai_body(tools=tools, tool_choice="none"))).json()
    assert none["choices"][0]["finish_reason"] == "stop"
    any_tool = {"type": "any"}
    an = (await client.post(sim.url + "/v1/messages",
                            json=anthropic_body("sim-notools", tools=[{"name": "t", "input_schema": {}}],
                                                tool_choice=any_tool))).json()
    assert an["stop_reason"] == "tool_use"
    g_tools = [{"functionDeclarations": [{"name": "x"}, {"name": "y"}]}]
    config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["y"]}}
    g = (await client.post(sim.url + gemini_path("sim-notools"), json=gemini_body(tools=g_tools, toolConfig=config)))
    assert g.json()["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "y"


def test_sample_arguments_fill_required_properties() -> None:
    """Sampled arguments carry every required property with a value of its type, nested objects too."""
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "INTEGER"}, "x": {"type": ["null", "number"]}, "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
            "optional": {"type": "string"},
        },
        "required": ["n", "x", "ok", "tags", "where"],
    }
    assert sample_arguments(schema) == {"n": 1, "x": 1.5, "ok": True, "tags": ["sim", "sim"], "where": {"lat": 1.5}}
    assert sample_arguments({}) == {}


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "openai_type", "anthropic_type", "gemini_status"),
    [
        (RateLimit(2.0), 429, "requests", "rate_limit_error", "RESOURCE_EXHAUSTED"),
        (ServerError(), 500, "server_error", "api_error", "INTERNAL"),
        (Unavailable(), 503, "server_error", "overloaded_error", "UNAVAILABLE"),
        (Overloaded(), 529, "server_error", "overloaded_error", "UNAVAILABLE"),
    ],
)
async def test_status_faults_in_each_format(
    sim: Simulator, client: httpx2.AsyncClient, fault: Any, status: int, openai_type: str, anthropic_type: str,
    gemini_status: str,
) -> None:
    """Each status fault reaches the client with its status and the format's error body."""
    sim.script("sim-a", [fault, fault, fault])
    oa = await client.post(sim.url + "/v1/chat/completions", json=openai_body(stream=True))
    an = await client.post(sim.url + "/v1/messages", json=anthropic_body(stream=True))
    ge = await client.post(sim.url + gemini_path(stream=True), json=gemini_body())
    assert (oa.status_code, an.status_code, ge.status_code) == (status, status, status)
    assert oa.json()["error"]["type"] == openai_type
    assert an.json()["type"] == "error"
    assert an.json()["error"]["type"] == anthropic_type
    assert ge.json()["error"]["status"] == gemini_status
    assert ge.json()["error"]["code"] == status
    retry = [r.headers.get("retry-after") for r in (oa, an, ge)]
    assert retry == (["2"] * 3 if status == 429 else [None] * 3)
    assert sim.stats("sim-a").faults == {type(fault).__struct_config__.tag: 3}


async def test_reset_is_a_transport_error(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A reset fault closes the connection before any response byte."""
    sim.script("sim-a", [Reset()])
    with pytest.raises(httpx2.TransportError):
        await client.post(sim.url + "/v1/chat/completions", json=openai_body())
    ok = await client.post(sim.url + "/v1/chat/completions", json=openai_body())
    assert ok.status_code == 200
    stats = sim.stats("sim-a")
    assert stats.faults == {"reset": 1}
    assert stats.completed == 1


async def test_drop_closes_mid_stream_after_n_tokens(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A drop sends N content chunks, then the connection closes without the end of the stream."""
    sim.script("sim-a", [Drop(after_tokens=2), Drop()])
    got = b""
    with pytest.raises(httpx2.RemoteProtocolError):
        async with client.stream("POST", sim.url + "/v1/chat/completions", json=openai_body(stream=True)) as resp:
            async for chunk in resp.aiter_bytes():
                got += chunk
    contents = [json.loads(e.data)["choices"][0]["delta"].get("content") for e in SSEParser().feed(got)]
    assert len(contents) == 3
    assert all(contents[1:])
    assert b"[DONE]" not in got
    with pytest.raises(httpx2.RemoteProtocolError):
        await client.post(sim.url + "/v1/chat/completions", json=openai_body())
    assert sim.stats("sim-a").faults == {"drop": 2}
    assert sim.stats("sim-a").completed == 0


async def test_malformed_chunk_and_body(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A malformed fault puts one undecodable data frame in a stream, or breaks a non-stream body."""
    sim.script("sim-a", [Malformed(after_tokens=1), Malformed()])
    resp = await client.post(sim.url + "/v1/messages", json=anthropic_body(stream=True))
    bad = []
    for ev in events(resp.content):
        try:
            json.loads(ev.data)
        except json.JSONDecodeError:
            bad.append(ev)
    assert len(bad) == 1
    assert bad[0].event == "content_block_delta"
    body = await client.post(sim.url + "/v1/chat/completions", json=openai_body())
    assert body.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body.content)
    assert sim.stats("sim-a").faults == {"malformed": 2}


async def test_stall_headers_waits_on_the_clock(client: httpx2.AsyncClient) -> None:
    """A stall before headers sends nothing until the clock passes the stall, then answers normally."""
    clock = FakeClock()
    async with Simulator(CONFIG, clock=clock) as sim, anyio.create_task_group() as tg:
        sim.script("sim-a", [StallHeaders(5.0)])
        statuses: list[int] = []

        async def call() -> None:
            statuses.append((await client.post(sim.url + "/v1/chat/completions", json=openai_body())).status_code)

        tg.start_soon(call)
        await until(lambda: clock.sleepers == 1)
        clock.advance(4.9)
        assert clock.sleepers == 1
        assert statuses == []
        clock.advance(0.1)
        await until(lambda: statuses == [200])
    assert sim.stats("sim-a").faults == {"stall_headers": 1}
    assert sim.stats("sim-a").completed == 1


async def test_stall_first_token_sends_headers_then_waits(client: httpx2.AsyncClient) -> None:
    """A stall before the first token sends status and preamble at once, the tokens after the stall."""
    clock = FakeClock()
    async with Simulator(CONFIG, clock=clock) as sim:
        sim.script("sim-a", [StallFirstToken(3.0)])
        body = anthropic_body(stream=True)
        async with client.stream("POST", sim.url + "/v1/messages", json=body) as resp:
            assert resp.status_code == 200
            parser, seen = SSEParser(), list[SSEEvent]()
            chunks = resp.aiter_bytes()
            while not any(e.event == "ping" for e in seen):
                seen += parser.feed(await chunks.__anext__())
            assert [e.event for e in seen] == ["message_start", "content_block_start", "ping"]
            await until(lambda: clock.sleepers == 1)
            clock.advance(3.0)
            async for chunk in chunks:
                seen += parser.feed(chunk)
        assert seen[-1].event == "message_stop"
        assert sum(e.event == "content_block_delta" for e in seen) == 6


async def test_client_disconnects_are_counted(client: httpx2.AsyncClient) -> None:
    """A client that goes away during a stall (a hedge loser) is counted as disconnected, not completed."""
    clock = FakeClock()
    async with Simulator(CONFIG, clock=clock) as sim:
        sim.script("sim-a", [StallFirstToken(60.0), StallHeaders(60.0)])
        async with client.stream("POST", sim.url + "/v1/chat/completions", json=openai_body(stream=True)) as resp:
            await resp.aiter_bytes().__anext__()
            await until(lambda: clock.sleepers == 1)
        await until(lambda: sim.stats("sim-a").disconnected == 1)
        with anyio.move_on_after(0.5) as scope:
            await client.post(sim.url + "/v1/chat/completions", json=openai_body())
        assert scope.cancelled_caught
        await until(lambda: sim.stats("sim-a").disconnected == 2)
        winner = await client.post(sim.url + "/v1/chat/completions", json=openai_body())
        assert winner.status_code == 200
        stats = sim.stats("sim-a")
        assert (stats.received, stats.completed, stats.disconnected) == (3, 1, 2)


async def test_scripted_faults_apply_in_order(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """Scripted outcomes are consumed one per request, in order, then normal behaviour resumes."""
    sim.script("sim-a", [RateLimit(retry_after=2), ServerError()])
    sim.script("sim-a", [Normal(), Overloaded()])
    url = sim.url + "/v1/chat/completions"
    responses = [await client.post(url, json=openai_body()) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 500, 200, 529, 200]
    assert responses[0].headers["retry-after"] == "2"
    other = await client.post(url, json=openai_body("sim-notools"))
    assert other.status_code == 200
    assert sim.stats("sim-a").faults == {"rate_limit": 1, "server_error": 1, "overloaded": 1}


async def test_outage_window_on_a_fake_clock(client: httpx2.AsyncClient) -> None:
    """During an outage window its models fail as configured; before, after and elsewhere they answer."""
    clock = FakeClock(start=100.0)
    config = SimConfig(outages=(Outage(10.0, 20.0, Overloaded(), models=("sim-a",)),), models=CONFIG.models)
    async with Simulator(config, clock=clock) as sim:
        url = sim.url + "/v1/chat/completions"

        async def status(model: str) -> int:
            return (await client.post(url, json=openai_body(model))).status_code

        assert await status("sim-a") == 200
        clock.advance(10.0)
        assert (await status("sim-a"), await status("sim-notools")) == (529, 200)
        clock.advance(9.9)
        assert await status("sim-a") == 529
        clock.advance(0.1)
        assert await status("sim-a") == 200
        assert sim.stats("sim-a").faults == {"overloaded": 2}


async def test_stats_keep_last_bodies_and_sum_over_models(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """Stats keep the last keep_bodies request bodies per model and sum counters over models."""
    for n in range(3):
        await client.post(sim.url + "/v1/chat/completions", json=openai_body(temperature=n))
    await client.post(sim.url + gemini_path("unknown-model"), json=gemini_body())
    stats = sim.stats("sim-a")
    assert stats.received == 3
    assert stats.completed == 3
    assert [b["temperature"] for b in stats.bodies] == [1, 2]
    assert sim.stats("unknown-model").bodies[0]["contents"][0]["parts"][0]["text"] == PROMPT
    total = sim.stats()
    assert (total.received, total.completed, total.bodies) == (4, 4, ())
    assert sim.stats("never-asked").received == 0


async def test_unknown_model_gets_default_behaviour(sim: Simulator, client: httpx2.AsyncClient) -> None:
    """A model not in the config answers with the default behaviour."""
    data = (await client.post(sim.url + "/v1/chat/completions", json=openai_body("who-knows"))).json()
    assert data["usage"]["completion_tokens"] == 3
    assert data["model"] == "who-knows"


# --- determinism and latency --------------------------------------------------------------


async def _run_texts(config: SimConfig, client: httpx2.AsyncClient) -> list[tuple[int, str]]:
    async with Simulator(config) as sim:
        out = []
        for _ in range(6):
            resp = await client.post(sim.url + "/v1/chat/completions", json=openai_body("sim-r"))
            out.append((resp.status_code, resp.json()["choices"][0]["message"]["content"] if resp.is_success else ""))
        return out


async def test_seeded_runs_replay_exactly(client: httpx2.AsyncClient) -> None:
    """Two simulators with one seed give the same texts and faults; another seed differs."""
    behaviour = Behaviour(output_tokens=Uniform(3, 12), faults=(Chance(0.4, ServerError()),))
    config = SimConfig(models={"sim-r": behaviour}, seed=7)
    first = await _run_texts(config, client)
    assert first == await _run_texts(config, client)
    assert {status for status, _ in first} == {200, 500}
    other = SimConfig(models={"sim-r": behaviour}, seed=8)
    assert first != await _run_texts(other, client)


def test_plan_draws_tail_and_distributions() -> None:
    """Plans honour the heavy tail, distribution bounds and caps, and replay from the same seed."""
    rng = random.Random(1)
    assert all(2.0 <= draw(Uniform(2.0, 3.0), rng) <= 3.0 for _ in range(200))
    assert all(draw(LogNormal(1.0, 2.0, cap=4.0), rng) <= 4.0 for _ in range(200))
    assert draw(Fixed(-1.0), rng) == 0.0
    tail = Behaviour(ttft=Fixed(0.1), tail_p=1.0, tail=Fixed(9.0), per_token=Uniform(0.01, 0.02))
    plan = draw_plan(tail, request_rng(0, "m", 0), None)
    assert plan.ttft == 9.0
    assert len(plan.delays) == 16
    assert all(0.01 <= d <= 0.02 for d in plan.delays)
    assert plan == draw_plan(tail, request_rng(0, "m", 0), None)
    tails = sum(draw_plan(Behaviour(tail_p=0.2, tail=Fixed(5.0)), request_rng(0, "m", n), None).ttft == 5.0
                for n in range(500))
    assert 60 < tails < 140


async def test_latency_is_real_on_the_real_clock(client: httpx2.AsyncClient) -> None:
    """With the real clock, TTFT and per-token delays delay the stream by at least their sum."""
    config = SimConfig(default=Behaviour(ttft=Fixed(0.05), per_token=Fixed(0.01), output_tokens=Fixed(4)))
    async with Simulator(config) as sim:
        start = time.perf_counter()
        async with client.stream("POST", sim.url + "/v1/chat/completions", json=openai_body(stream=True)) as resp:
            first_token_at = None
            async for chunk in resp.aiter_bytes():
                if first_token_at is None and b'"content":"' in chunk and b'"content":""' not in chunk:
                    first_token_at = time.perf_counter() - start
        total = time.perf_counter() - start
    assert first_token_at is not None
    assert first_token_at >= 0.05
    assert total >= 0.08


# --- config, dead URL, CLI ----------------------------------------------------------------


def test_config_loads_from_toml_and_names_bad_keys(tmp_path: Path) -> None:
    """A TOML fleet decodes into Structs; a wrong value raises ConfigError naming its key path."""
    good = tmp_path / "fleet.toml"
    good.write_text(
        'seed = 3\n[models.sim-x]\nttft = {kind = "lognormal", median = 0.2, sigma = 0.3}\n'
        'output_tokens = {kind = "uniform", low = 5, high = 9}\n'
        '[[models.sim-x.faults]]\np = 0.1\nfault = {kind = "rate_limit", retry_after = 3}\n'
        '[[outages]]\nstart = 5\nend = 10\nfault = {kind = "reset"}\n'
    )
    config = load_config(good)
    assert config.seed == 3
    assert config.models["sim-x"].ttft == LogNormal(0.2, 0.3)
    assert config.models["sim-x"].faults == (Chance(0.1, RateLimit(3.0)),)
    assert config.outages == (Outage(5.0, 10.0, Reset()),)
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": {"sim-x": {"ttft": {"kind": "fixed", "value": "slow"}}}}')
    with pytest.raises(ConfigError, match=r"ttft\.value"):
        load_config(bad)
    assert main(["--config", str(bad)]) == 2


def test_default_fleet_names_simulated_models() -> None:
    """The default fleet is a few clearly simulated models with differing behaviour."""
    fleet = default_config().models
    assert {"sim-fast-1", "sim-flagship-1", "sim-open-1", "sim-tail-1"} <= set(fleet)
    assert len({b.ttft for b in fleet.values()}) == len(fleet)


async def test_dead_url_refuses_connections(client: httpx2.AsyncClient) -> None:
    """Nothing listens at dead_url(): a connection is refused."""
    with pytest.raises(httpx2.ConnectError):
        await client.get(dead_url() + "/v1/models")


async def test_cli_serves_until_terminated(client: httpx2.AsyncClient) -> None:
    """`main` in a subprocess prints its URL, serves /v1/models, and exits 0 on SIGTERM."""
    argv = [sys.executable, "-m", "interlock.adapters.simulator._server", "--port", "0"]
    async with await anyio.open_process(argv) as proc:
        assert proc.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while b"\n" not in line:
                line += await proc.stdout.receive()
        url = line.split(b"\n")[0].decode().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        models = (await client.get(url + "/v1/models")).json()
        assert "sim-fast-1" in [m["id"] for m in models["data"]]
        proc.terminate()
        with anyio.fail_after(10):
            assert await proc.wait() == 0

"""The embedded fleet behaves like a model: agent loops end, structured output parses, serve starts clean.

Three layers, each over real loopback HTTP: the simulator spoken to in its three dialects by plain
httpx2 (tool results end a loop, tools are called only when asked for, JSON answers match their
schema, streamed piece by piece); the gateway over a door on the embedded default config, driven
by the official ``openai`` SDK's own helpers and by the OpenAI Agents SDK; and ``interlock serve``
run as a user runs it. Generated values are checked with ``jsonschema`` (formats included),
for hand-written schemas and for random ones.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jsonschema
import msgspec
import openai
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interlock
from interlock.actors.cli import _serve
from interlock.actors.cli._demo import demo_config
from interlock.adapters._config_file import default_config
from interlock.adapters.providers._sse import SSEParser
from interlock.adapters.simulator._sample import asks_for, pattern_sample, sample_arguments, sample_value
from interlock.adapters.simulator._server import Behaviour, Fixed, SimConfig, Simulator, Unavailable
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from tests.test_gateway import serving

pytestmark = pytest.mark.anyio

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
WEATHER_SCHEMA: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 2}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The current weather in a city.", "parameters": WEATHER_SCHEMA},
}
ORDER_SCHEMA: Any = {
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                           "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["sku", "qty"],
            "additionalProperties": False,
        },
    },
    "type": "object",
    "properties": {
        "status": {"enum": ["open", "shipped"]},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1},
        "placed": {"type": "string", "format": "date-time"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 2}]},
    },
    "required": ["status", "lines", "placed", "note"],
    "additionalProperties": False,
}  # fmt: skip
ASK_WEATHER = "What is the weather in Oslo today?"
SIM = SimConfig(default=Behaviour(output_tokens=Fixed(8)))


def valid(value: Any, schema: Any) -> Any:
    """``value``, after checking it against ``schema`` (formats asserted)."""
    jsonschema.validate(value, schema, format_checker=FORMATS)
    return value


def sse_bytewise(raw: bytes) -> list[Any]:
    """The JSON of every SSE event in ``raw``, parsed from one byte at a time (cuts inside UTF-8 and data: lines)."""
    parser, events = SSEParser(), []
    for i in range(len(raw)):
        events += parser.feed(raw[i : i + 1])
    events += parser.close()
    return [json.loads(e.data) for e in events if e.data.startswith("{")]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator whose models answer 8 tokens at once."""
    async with Simulator(SIM) as simulator:
        yield simulator


# --- the simulator, dialect by dialect ----------------------------------------------------------


def _openai(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"model": "sim-x", "messages": messages, "tools": [WEATHER], **extra}


def _anthropic(messages: list[Any], **extra: Any) -> dict[str, Any]:
    tool = {"name": "get_weather", "description": "The current weather in a city.", "input_schema": WEATHER_SCHEMA}
    return {"model": "sim-x", "max_tokens": 256, "messages": messages, "tools": [tool], **extra}


def _gemini(contents: list[Any], **extra: Any) -> dict[str, Any]:
    decl = {"name": "get_weather", "description": "The current weather in a city.",
            "parametersJsonSchema": WEATHER_SCHEMA}  # fmt: skip
    return {"contents": contents, "tools": [{"functionDeclarations": [decl]}], **extra}


async def test_openai_loop_calls_when_asked_and_ends_after_the_result(sim: Simulator) -> None:
    """Chat completions: no call for an unrelated turn, a valid call when asked, text after the tool's result."""
    url = sim.url + "/v1/chat/completions"
    async with httpx2.AsyncClient() as http:
        chat = (await http.post(url, json=_openai([{"role": "user", "content": "Tell me a joke."}]))).json()
        asked = [{"role": "user", "content": ASK_WEATHER}]
        call = (await http.post(url, json=_openai(asked))).json()["choices"][0]
        (tool_call,) = call["message"]["tool_calls"]
        turn = [*asked, call["message"], {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny"}]
        done = (await http.post(url, json=_openai(turn))).json()["choices"][0]
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert call["finish_reason"] == "tool_calls"
    valid(json.loads(tool_call["function"]["arguments"]), WEATHER_SCHEMA)
    assert done["finish_reason"] == "stop"
    assert done["message"]["content"]


async def test_anthropic_loop_ends_after_a_tool_result(sim: Simulator) -> None:
    """Messages: a tool_use when asked, then text once the last user turn is a tool_result."""
    url = sim.url + "/v1/messages"
    asked = [{"role": "user", "content": ASK_WEATHER}]
    async with httpx2.AsyncClient() as http:
        call = (await http.post(url, json=_anthropic(asked))).json()
        (use,) = call["content"]
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]}
        turn = [*asked, {"role": "assistant", "content": call["content"]}, result]
        done = (await http.post(url, json=_anthropic(turn))).json()
        plain = (await http.post(url, json=_anthropic([{"role": "user", "content": "Hi there"}]))).json()
    assert call["stop_reason"] == "tool_use"
    valid(use["input"], WEATHER_SCHEMA)
    assert done["stop_reason"] == "end_turn"
    assert [b["type"] for b in done["content"]] == ["text"]
    assert plain["stop_reason"] == "end_turn"


async def test_gemini_loop_ends_after_a_function_response(sim: Simulator) -> None:
    """generateContent: a functionCall when asked, then text once the last turn is a functionResponse."""
    url = sim.url + "/v1beta/models/sim-x:generateContent"
    asked = [{"role": "user", "parts": [{"text": ASK_WEATHER}]}]
    async with httpx2.AsyncClient() as http:
        call = (await http.post(url, json=_gemini(asked))).json()["candidates"][0]["content"]
        result = {"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}
        answer = {"role": "user", "parts": [result]}
        done = (await http.post(url, json=_gemini([*asked, call, answer]))).json()
    valid(call["parts"][0]["functionCall"]["args"], WEATHER_SCHEMA)
    assert "text" in done["candidates"][0]["content"]["parts"][0]


async def test_forcing_tool_choice_calls_even_after_a_result(sim: Simulator) -> None:
    """tool_choice required (and a named tool) always calls: the caller asked for it."""
    messages = [{"role": "user", "content": "hello"}, {"role": "tool", "tool_call_id": "c", "content": "x"}]
    async with httpx2.AsyncClient() as http:
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            body = _openai(messages, tool_choice=choice)
            reply = (await http.post(sim.url + "/v1/chat/completions", json=body)).json()["choices"][0]
            assert reply["finish_reason"] == "tool_calls"
            valid(json.loads(reply["message"]["tool_calls"][0]["function"]["arguments"]), WEATHER_SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
async def test_structured_output_in_every_dialect(sim: Simulator, stream: bool) -> None:
    """json_schema in all three dialects answers JSON valid for the schema; streamed JSON reassembles byte by byte."""
    fmt = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER_SCHEMA, "strict": True}}
    user = [{"role": "user", "content": "Make up an order."}]
    generation = {"responseMimeType": "application/json", "responseJsonSchema": ORDER_SCHEMA}
    gemini_method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    requests = [
        ("/v1/chat/completions", {"model": "sim-x", "messages": user, "response_format": fmt, "stream": stream}),
        ("/v1/messages", {"model": "sim-x", "max_tokens": 512, "messages": user, "stream": stream,
                          "output_config": {"format": {"type": "json_schema", "schema": ORDER_SCHEMA}}}),
        (f"/v1beta/models/sim-x:{gemini_method}",
         {"contents": [{"role": "user", "parts": [{"text": "Make up an order."}]}], "generationConfig": generation}),
    ]  # fmt: skip
    async with httpx2.AsyncClient() as http:
        for path, body in requests:
            resp = await http.post(sim.url + path, json=body)
            assert resp.status_code == 200, resp.text
            text = _streamed_text(resp.content) if stream else _body_text(resp.json())
            valid(json.loads(text), ORDER_SCHEMA)


def _body_text(data: dict[str, Any]) -> str:
    if "choices" in data:
        return str(data["choices"][0]["message"]["content"])
    if "content" in data:
        return "".join(b["text"] for b in data["content"])
    return "".join(p["text"] for p in data["candidates"][0]["content"]["parts"])


def _streamed_text(raw: bytes) -> str:
    pieces = []
    for event in sse_bytewise(raw):
        if event.get("choices"):
            pieces.append(event["choices"][0]["delta"].get("content") or "")
        elif event.get("type") == "content_block_delta":
            pieces.append(event["delta"].get("text", ""))
        elif event.get("candidates"):
            pieces += [p.get("text", "") for p in event["candidates"][0].get("content", {}).get("parts", [])]
    assert len([p for p in pieces if p]) > 1  # it streamed in pieces, not as one frame
    return "".join(pieces)


async def test_json_object_answers_an_object(sim: Simulator) -> None:
    """json_object (OpenAI) and a JSON mime type without schema (Gemini) answer a JSON object."""
    async with httpx2.AsyncClient() as http:
        body = {"model": "sim-x", "messages": [{"role": "user", "content": "json please"}],
                "response_format": {"type": "json_object"}}  # fmt: skip
        oa = (await http.post(sim.url + "/v1/chat/completions", json=body)).json()
        g_body = {"contents": [{"parts": [{"text": "json please"}]}],
                  "generationConfig": {"responseMimeType": "application/json"}}  # fmt: skip
        ge = (await http.post(sim.url + "/v1beta/models/sim-x:generateContent", json=g_body)).json()
    assert isinstance(json.loads(oa["choices"][0]["message"]["content"]), dict)
    assert isinstance(json.loads(_body_text(ge)), dict)


# --- what is generated --------------------------------------------------------------------------

SCHEMAS: list[Any] = [
    ORDER_SCHEMA,
    WEATHER_SCHEMA,
    {"definitions": {"node": {"type": "object", "required": ["kids"],
                              "properties": {"kids": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}},
     "type": "object", "properties": {"root": {"$ref": "#/definitions/node"}}, "required": ["root"]},
    {"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 10, "multipleOf": 3},
                                      "k": {"type": "integer", "exclusiveMaximum": 0}}, "required": ["n", "k"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True,
                                               "minItems": 3}}, "required": ["tags"]},
    {"type": "object", "required": ["who"], "properties": {"who": {"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
    ]}}},
    {"type": "object", "properties": {f: {"type": "string", "format": f} for f in
                                      ("email", "uri", "uuid", "date", "ipv4", "ipv6", "hostname", "date-time")},
     "required": ["email", "uri", "uuid", "date", "ipv4", "ipv6", "hostname", "date-time"]},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": r"^(?:GB|DE)\d{2}[A-Z]{2,4}$"},
                                      "id": {"type": "string", "pattern": r"^[^\s]+@[a-z]+\.(com|org)$"}},
     "required": ["code", "id"]},
    {"type": "object", "required": ["pick", "given"],
     "properties": {"pick": {"oneOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]},
                    "given": {"type": "string", "examples": ["Oslo"]}}},
    {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}, "s": {"type": "STRING", "nullable": True}},
     "required": ["n", "s"]},  # Gemini's dialect, as a Gemini request carries it
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_arguments_are_valid_for_the_schema(schema: Any) -> None:
    """$ref ($defs, definitions, recursive), enums, bounds, formats, patterns, allOf/oneOf: the value validates."""
    if schema["type"] == "OBJECT":  # Gemini's upper-case types are not JSON Schema: check the meaning
        assert sample_arguments(schema) == {"n": 1, "s": "sim"}
        return
    value = valid(sample_arguments(schema), schema)
    assert set(schema.get("required", [])) <= set(value)


def test_a_given_example_is_said() -> None:
    """An ``examples`` value is what the simulator says; a simple pattern yields a matching string."""
    assert sample_value({"type": "string", "examples": ["Oslo", "Rome"]}) == "Oslo"
    assert pattern_sample(r"^[A-Z]{3}-\d{4}$") == "AAA-0000"


_LEAF = st.sampled_from([
    {"type": "string"}, {"type": "integer", "minimum": -3, "maximum": 40}, {"type": "number", "exclusiveMinimum": 0},
    {"type": "boolean"}, {"type": "null"}, {"enum": ["x", 2, None]}, {"const": "k"}, {"type": "string", "minLength": 5},
    {"type": "string", "maxLength": 1}, {"type": "string", "format": "email"}, {"type": ["null", "integer"]},
    {"type": "string", "pattern": "^[a-f0-9]{8}$"}, {"type": "integer", "multipleOf": 7, "minimum": 8},
])  # fmt: skip
_NAMES = st.text("abcdefgh", min_size=1, max_size=4)


def _compound(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    props = st.dictionaries(_NAMES, inner, min_size=1, max_size=4)
    objects = props.flatmap(lambda p: st.builds(
        lambda req, closed: {"type": "object", "properties": p, "required": req, "additionalProperties": not closed},
        st.lists(st.sampled_from(sorted(p)), unique=True), st.booleans(),
    ))  # fmt: skip
    arrays = st.builds(
        lambda items, least: {"type": "array", "items": items, "minItems": least}, inner, st.integers(0, 3)
    )
    unions = st.lists(inner, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
    return objects | arrays | unions


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(_LEAF, _compound, max_leaves=12), st.booleans())
def test_random_schemas_get_valid_values(schema: Any, by_ref: bool) -> None:
    """For random nested schemas (also behind a $ref into $defs), the sampled value validates."""
    if by_ref:
        schema = {"$defs": {"it": schema}, "$ref": "#/$defs/it"}
    valid(sample_value(schema), schema)


def test_a_turn_asks_for_a_tool_by_name_or_description() -> None:
    """The auto rule: a name part or a long description word in the user's turn; generic words never count."""
    assert asks_for("weather in Oslo?", "get_weather", "")
    assert asks_for("Please convert 3 EUR", "convertCurrency", "")
    assert asks_for("what does the forecast say", "lookup", "Look up forecasts for a city")
    assert not asks_for("get me a coffee", "get_weather", "Returns the weather")
    assert not asks_for("hello", "get_weather", "Weather in a city")


# --- through the gateway, on the embedded default -----------------------------------------------


class Served:
    """A running gateway over a door: its base URL, the door and the ledger file."""

    def __init__(self, url: str, door: interlock.Door, ledger: Path) -> None:
        self.url, self.door, self.ledger = url, door, ledger


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Served]:
    """The gateway over a fresh door on the embedded default config, as ``interlock serve`` runs it."""
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(default_config(), ledger_path=ledger) as door, serving(door) as url:
        yield Served(url, door, ledger)


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-anything", max_retries=0)


def _weather(arguments: str) -> str:
    args = valid(json.loads(arguments), WEATHER_SCHEMA)
    return f"18 degrees {args['unit']} and sunny in {args['city']}"


@pytest.mark.parametrize("model", ["default", "mini", "flash", "tail"])
async def test_manual_tool_loop_finishes(gateway: Served, model: str) -> None:
    """call -> run the tool -> send its result -> final text, on each dialect of the fleet (and the job)."""
    url = gateway.url
    messages: list[Any] = [{"role": "user", "content": ASK_WEATHER}]
    async with _client(url) as client:
        with anyio.fail_after(30):
            first = (await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])).choices[0]
            calls = first.message.tool_calls or []
            messages.append(first.message.model_dump(exclude_none=True))
            messages += [{"role": "tool", "tool_call_id": c.id, "content": _weather(c.function.arguments)}
                         for c in calls]  # type: ignore[union-attr]  # fmt: skip
            final = (await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])).choices[0]
    assert first.finish_reason == "tool_calls"
    assert len(calls) == 1
    assert final.finish_reason == "stop"
    assert final.message.content
    assert not final.message.tool_calls


async def test_streaming_helper_tool_loop_finishes(gateway: Served) -> None:
    """The SDK's ``chat.completions.stream`` helper accumulates the call, then the final answer."""
    url = gateway.url
    messages: list[Any] = [{"role": "user", "content": ASK_WEATHER}]
    async with _client(url) as client:
        with anyio.fail_after(30):
            for _turn in range(4):
                async with client.chat.completions.stream(model="default", messages=messages, tools=[WEATHER]) as s:
                    done = await s.get_final_completion()
                message = done.choices[0].message
                if not message.tool_calls:
                    break
                messages.append({"role": "assistant", "tool_calls": [c.model_dump() for c in message.tool_calls]})
                messages += [{"role": "tool", "tool_call_id": c.id, "content": _weather(c.function.arguments)}
                             for c in message.tool_calls]  # type: ignore[union-attr]  # fmt: skip
    assert _turn == 1  # one call, then the answer
    assert done.choices[0].finish_reason == "stop"
    assert message.content


async def test_openai_agents_sdk_runner_finishes(gateway: Served) -> None:
    """The OpenAI Agents SDK's Runner calls the tool once and ends with a final output."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    url = gateway.url
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Report the current weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async with _client(url) as client:
        model = OpenAIChatCompletionsModel(model="default", openai_client=client)
        agent = Agent(name="forecaster", instructions="Answer with the weather.", tools=[get_weather], model=model)
        with anyio.fail_after(30):
            result = await Runner.run(agent, "What is the weather in Tokyo?", max_turns=4)
    assert len(seen) == 1
    assert isinstance(result.final_output, str)
    assert result.final_output
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert kinds[-1] == "message_output_item"


class Status(enum.Enum):
    """An order's state."""

    OPEN = "open"
    SHIPPED = "shipped"


class Line(pydantic.BaseModel):
    """One order line."""

    sku: str
    qty: int


class Order(pydantic.BaseModel):
    """A structured answer: an enum, a nested array of models (a $ref), a nested object."""

    status: Status
    lines: list[Line]
    ship_to: Line | None


@pytest.mark.parametrize("model", ["mini", "flash", "tail"])
async def test_parse_helper_returns_a_valid_object(gateway: Served, model: str) -> None:
    """``chat.completions.parse(response_format=Order)`` parses, streamed too, whichever dialect serves it."""
    url = gateway.url
    prompt: Any = [{"role": "user", "content": "Make up an order."}]
    async with _client(url) as client:
        with anyio.fail_after(30):
            parsed = (await client.chat.completions.parse(model=model, messages=prompt, response_format=Order))
            async with client.chat.completions.stream(model=model, messages=prompt, response_format=Order) as s:
                streamed = await s.get_final_completion()
    for completion in (parsed, streamed):
        message = completion.choices[0].message
        assert isinstance(message.parsed, Order)
        valid(json.loads(message.content or ""), Order.model_json_schema())


async def test_agents_sdk_structured_output(gateway: Served) -> None:
    """An Agent with an ``output_type`` gets its Pydantic object back from the fleet."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    url = gateway.url
    async with _client(url) as client:
        model = OpenAIChatCompletionsModel(model="default", openai_client=client)
        agent = Agent(name="clerk", instructions="Make up an order.", output_type=Order, model=model)
        with anyio.fail_after(30):
            result = await Runner.run(agent, "One order, please.", max_turns=2)
    assert isinstance(result.final_output, Order)


# --- the demo's outage is the demo's; serve starts clean ----------------------------------------


async def test_a_fresh_door_on_the_default_answers_without_errors(gateway: Served) -> None:
    """Every model of the embedded default answers its first requests: no outage, no failed attempt."""
    url, door = gateway.url, gateway.door
    assert door.simulator is not None
    assert door.simulator.config.outages == ()
    chat = ["mini", "flash", "tail", "open", "llama_local", "default", "cheap_bulk"]
    async with _client(url) as client:
        with anyio.fail_after(30):
            for model in chat:
                reply = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                assert reply.choices[0].finish_reason == "stop"
    await door.flush()
    async with SqliteLedgerStore(gateway.ledger) as store:
        attempts = await store.fetch_attempts()
    assert len(attempts) >= len(chat)
    assert [a.outcome for a in attempts if a.outcome == "error"] == []  # a hedge's loser may be cancelled
    assert door.simulator.stats().faults == {}


def test_the_demo_keeps_its_outage() -> None:
    """``interlock demo`` runs on the default plus its scripted outage of sim_gemini's models, 1.5 s to 7.5 s in."""
    demo = msgspec.convert(demo_config().simulator, SimConfig)
    (outage,) = demo.outages
    assert outage.fault == Unavailable()
    assert [outage.covers(m, 2.0) for m in ("sim-flash-1", "sim-open-1", "sim-fast-1")] == [True, True, False]
    assert not outage.covers("sim-flash-1", 7.5)
    assert msgspec.convert(default_config().simulator, SimConfig).outages == ()


async def test_serve_banner_says_url_and_any_key(tmp_path: Path) -> None:
    """``interlock serve`` on the embedded default: the banner names the URL and that any key works; it answers."""
    argv = [sys.executable, "-m", "interlock.actors.cli._serve", "--port", "0", "--ledger", str(tmp_path / "s.sqlite")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(argv, env=env, cwd=tmp_path) as process:
        assert process.stderr is not None
        output = b""
        with anyio.fail_after(30):
            while b"any API key is accepted" not in output:
                output += await process.stderr.receive()
        banner = output.decode()
        url = banner.split("listening on ")[1].split(";")[0]
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="whatever", max_retries=0) as client:
            with anyio.fail_after(30):
                for model in ("flash", "open", "default"):
                    hi: Any = [{"role": "user", "content": "hi"}]
                    reply = await client.chat.completions.create(model=model, messages=hi)
                    assert reply.choices[0].message.content
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            rest = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
    assert url.startswith("http://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0
    assert f"OpenAI base URL {url}/v1" in banner
    assert code == 0
    assert b"ledger flushed" in rest


def test_serve_without_server_libraries_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """With starlette missing, ``interlock serve`` says which extra to install, in one line, exit code 2."""
    monkeypatch.setitem(sys.modules, "starlette", None)  # `import starlette` now fails as when not installed
    assert _serve.main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("interlock serve: the gateway needs starlette")
    assert "pip install 'interlock[server]'" in err

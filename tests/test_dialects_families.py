"""Every inbound dialect served by every provider family, read with each dialect's official SDK.

One real gateway (uvicorn on 127.0.0.1) over a door on the embedded default fleet; each request
pins a model of one family — ``mini`` (OpenAI wire), ``flagship_anthropic`` (Anthropic wire),
``flash`` (Gemini wire) — so the canonical types are the only bridge between what the client
speaks and what the provider speaks. Each cell asks for a forced tool call, streamed and not,
and checks what the SDK parsed, then that the ledger holds one row per request with the model
pinned.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai
import pytest

import interlock
from interlock.adapters._config_file import default_config
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from tests.test_gateway import serving

pytestmark = pytest.mark.anyio

FAMILIES = ["mini", "flagship_anthropic", "flash"]
SCHEMA: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
ASK = "What is the weather in Oslo?"


class Served:
    """A gateway over a door on the default fleet: its URL, its ledger, SDK clients for it."""

    def __init__(self, url: str, ledger: Path, door: interlock.Door) -> None:
        self.url, self.ledger, self.door = url, ledger, door

    def openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="sk-any", max_retries=0)

    def anthropic(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key="sk-any", max_retries=0)

    async def models(self) -> list[str]:
        await self.door.flush()
        async with SqliteLedgerStore(self.ledger) as store:
            return [r.model for r in await store.fetch_requests()]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(default_config(), ledger_path=ledger) as door, serving(door) as url:
        yield Served(url, ledger, door)


def _valid(arguments: str) -> dict[str, Any]:
    value = json.loads(arguments)
    assert isinstance(value["city"], str)
    assert value["unit"] in ("celsius", "fahrenheit")
    return dict(value)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", FAMILIES)
async def test_chat_completions_tool_call_from_every_family(served: Served, model: str, stream: bool) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    messages: Any = [{"role": "user", "content": ASK}]
    with anyio.fail_after(20):
        async with served.openai() as client:
            if stream:
                async with client.chat.completions.stream(
                    model=model, messages=messages, tools=tools, tool_choice=choice
                ) as s:
                    reply = await s.get_final_completion()
            else:
                reply = await client.chat.completions.create(
                    model=model, messages=messages, tools=tools, tool_choice=choice
                )
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    _valid(call.function.arguments)  # type: ignore[union-attr]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert await served.models() == [model]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", FAMILIES)
async def test_responses_function_call_from_every_family(served: Served, model: str, stream: bool) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False}]
    choice: Any = {"type": "function", "name": "get_weather"}
    with anyio.fail_after(20):
        async with served.openai() as client:
            if stream:
                async with client.responses.stream(model=model, input=ASK, tools=tools, tool_choice=choice) as s:
                    response = await s.get_final_response()
            else:
                response = await client.responses.create(model=model, input=ASK, tools=tools, tool_choice=choice)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    _valid(calls[0].arguments)
    assert response.status == "completed"
    assert await served.models() == [model]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", FAMILIES)
async def test_messages_tool_use_from_every_family(served: Served, model: str, stream: bool) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather in a city", "input_schema": SCHEMA}]
    choice: Any = {"type": "tool", "name": "get_weather"}
    messages: Any = [{"role": "user", "content": ASK}]
    with anyio.fail_after(20):
        async with served.anthropic() as client:
            if stream:
                async with client.messages.stream(
                    model=model, max_tokens=256, messages=messages, tools=tools, tool_choice=choice
                ) as s:
                    message = await s.get_final_message()
            else:
                message = await client.messages.create(
                    model=model, max_tokens=256, messages=messages, tools=tools, tool_choice=choice
                )
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    _valid(json.dumps(uses[0].input))
    assert message.stop_reason == "tool_use"
    assert await served.models() == [model]


@pytest.mark.parametrize("model", FAMILIES)
async def test_structured_output_in_every_dialect_from_every_family(served: Served, model: str) -> None:
    """A JSON schema asked for in each dialect's own way comes back as JSON valid for it."""
    messages: Any = [{"role": "user", "content": "Describe the weather in Oslo."}]
    with anyio.fail_after(30):
        async with served.openai() as client:
            fmt: Any = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
            chat = await client.chat.completions.create(model=model, messages=messages, response_format=fmt)
            text: Any = {"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA}}
            response = await client.responses.create(model=model, input=messages, text=text)
        async with served.anthropic() as claude:
            output: Any = {"format": {"type": "json_schema", "schema": SCHEMA}}
            message = await claude.messages.create(
                model=model, max_tokens=256, messages=messages, extra_body={"output_config": output}
            )
    _valid(chat.choices[0].message.content or "")
    _valid(response.output_text)
    _valid("".join(block.text for block in message.content if block.type == "text"))
    assert await served.models() == [model, model, model]

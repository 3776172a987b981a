"""Reasoning asked for reaches the provider in its own terms, or the request is refused: never dropped.

``ChatRequest.reasoning`` (an effort, or a thinking budget) is what OpenAI's ``reasoning_effort``,
the Responses API's ``reasoning.effort`` and Anthropic's ``thinking`` map to; each codec sends it
as its provider documents (``reasoning_effort``; ``thinking.budget_tokens``;
``generationConfig.thinkingConfig.thinkingBudget``), and routing sends it only to models marked
``reasoning = true``. Checked on the codecs' bytes, through the router, and end to end with the
official SDKs against a real gateway over the embedded fleet, reading what the simulator received.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import msgspec
import openai
import pytest

import interlock
from interlock import ChatRequest, Message, PolicyRefused, Reasoning, RequestError
from interlock.adapters._config_file import default_config
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.policies._cache_key import cache_key
from interlock.policies._reasoning import budget_of, effort_of
from interlock.policies._routing import resolve
from tests.test_gateway import serving

pytestmark = pytest.mark.anyio

HI = (Message.text("user", "think about it"),)


def _body(codec: Any, request: ChatRequest, model: str = "m") -> dict[str, Any]:
    return dict(json.loads(codec.encode(request, model, stream=True).body))


def test_effort_and_budget_derive_from_each_other() -> None:
    assert effort_of(Reasoning(effort="low")) == "low"
    assert effort_of(Reasoning(budget_tokens=3000)) == "medium"
    assert effort_of(Reasoning(budget_tokens=100_000)) == "high"
    assert budget_of(Reasoning(effort="high"), 100_000) == 24576
    assert budget_of(Reasoning(budget_tokens=5000), 2000) == 1999  # the answer keeps room under max_tokens


def test_each_codec_sends_reasoning_as_its_provider_documents() -> None:
    asked = ChatRequest(messages=HI, reasoning=Reasoning(effort="high"), max_tokens=32_000)
    assert _body(OpenAICodec("o", api_key=None), asked)["reasoning_effort"] == "high"
    assert _body(AnthropicCodec("a", api_key=None), asked)["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    config = _body(GeminiCodec("g", api_key=None), asked)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    plain = ChatRequest(messages=HI, max_tokens=32_000)
    assert "reasoning_effort" not in _body(OpenAICodec("o", api_key=None), plain)
    assert "thinking" not in _body(AnthropicCodec("a", api_key=None), plain)
    assert "thinkingConfig" not in (_body(GeminiCodec("g", api_key=None), plain).get("generationConfig") or {})


def test_anthropic_thinking_needs_room_above_its_minimum_budget() -> None:
    small = ChatRequest(messages=HI, reasoning=Reasoning(budget_tokens=500), max_tokens=4096)
    assert _body(AnthropicCodec("a", api_key=None), small)["thinking"]["budget_tokens"] == 1024
    with pytest.raises(RequestError) as info:
        AnthropicCodec("a", api_key=None).encode(msgspec.structs.replace(small, max_tokens=800), "m", stream=False)
    assert info.value.field == "max_tokens"


def test_reasoning_reaches_only_models_that_take_it() -> None:
    config = default_config()
    asked = ChatRequest(messages=HI, reasoning=Reasoning(effort="low"), model_class="fast")
    resolution = resolve(config, asked, 10)
    assert [c.name for c in resolution.candidates] == ["flash"]
    skipped = {s.model: (s.reason, s.detail) for s in resolution.skipped}
    assert skipped["mini"] == skipped["tail"] == ("capability", "takes no reasoning budget")
    assert cache_key(asked, "x", "t") != cache_key(msgspec.structs.replace(asked, reasoning=None), "x", "t")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    async with interlock.open(default_config(), ledger_path=tmp_path / "l.sqlite") as door, serving(door) as url:
        yield url, door._sim  # type: ignore[attr-defined]


async def test_every_dialect_carries_reasoning_to_the_provider(gateway: tuple[str, Any]) -> None:
    url, sim = gateway
    hi: Any = [{"role": "user", "content": "think about it"}]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
        chat = await client.chat.completions.create(model="flagship_openai", messages=hi, reasoning_effort="low")
        response = await client.responses.create(model="flash", input="think", reasoning={"effort": "high"})
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as claude:
        message = await claude.messages.create(
            model="flagship_anthropic", max_tokens=4096, messages=hi,
            thinking={"type": "enabled", "budget_tokens": 2048},
        )  # fmt: skip
    assert chat.choices[0].message.content
    assert response.status == "completed"
    assert message.stop_reason == "end_turn"
    assert sim.stats("sim-flagship-2").bodies[-1]["reasoning_effort"] == "low"
    thinking = sim.stats("sim-flash-1").bodies[-1]["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingBudget"] == 24576
    assert sim.stats("sim-flagship-1").bodies[-1]["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_reasoning_on_a_model_without_it_is_refused_not_dropped(gateway: tuple[str, Any]) -> None:
    url, sim = gateway
    hi: Any = [{"role": "user", "content": "think about it"}]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.chat.completions.create(model="mini", messages=hi, reasoning_effort="high")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="mini", messages=hi, reasoning_effort="extreme")  # type: ignore[arg-type]
    assert info.value.code == "policy_refused"
    assert info.value.param == "capability"
    assert bad.value.param == "reasoning_effort"
    assert sim.stats("sim-fast-1").received == 0  # nothing went upstream


async def test_door_callers_ask_for_reasoning_too(tmp_path: Path) -> None:
    async with interlock.open(default_config(), ledger_path=tmp_path / "l.sqlite") as door:
        reply = await door.ask("think", model="flagship_anthropic", reasoning=Reasoning(budget_tokens=3000))
        with pytest.raises(PolicyRefused):
            await door.ask("think", model="mini", reasoning=Reasoning(effort="low"))
        body = door._sim.stats("sim-flagship-1").bodies[-1]  # type: ignore[attr-defined]
    assert reply.content
    assert body["thinking"]["budget_tokens"] == 3000

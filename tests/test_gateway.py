"""The OpenAI-compatible gateway over real HTTP: the official openai SDK and raw httpx2 against uvicorn."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest
import uvicorn

import interlock
from interlock import ChatRequest, ConfigError, RouteEvent, StreamEvent, ToolCallDone, ToolCallPart
from interlock._errors import BudgetExceeded, ErrorClass, InterlockError
from interlock._records import RequestRecord
from interlock.actors.cli._serve import load_keys
from interlock.adapters.gateway._answers import ChunkWriter
from interlock.adapters.gateway._app import GatewayDoor, ProviderState, VirtualKey, build_app, mask_key
from interlock.adapters.simulator._server import Drop, RateLimit, StallFirstToken
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._config import Config, parse_config

pytestmark = pytest.mark.anyio

KEY = "sk-ilk-acme-0123456789abcdef"
CONFIG = """
[providers.p_openai]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.p_anthropic]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[providers.p_slow]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.oa]
provider = "p_openai"
id = "sim-oa-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.an]
provider = "p_anthropic"
id = "sim-an-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.snail]
provider = "p_slow"
id = "sim-slow-1"
class = "slow"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.default]
chain = ["fast"]

[jobs.strict]
chain = ["oa"]
mid_stream = "fail"

[jobs.slow]
chain = ["slow"]

[simulator.default]
output_tokens = { kind = "fixed", value = 12 }

[simulator.models.sim-slow-1]
per_token = { kind = "fixed", value = 0.2 }
output_tokens = { kind = "fixed", value = 500 }
"""
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HELLO: Any = [{"role": "user", "content": "hello"}]


class Recording:
    """The door as the gateway sees it, keeping every ChatRequest the gateway built."""

    def __init__(self, door: interlock.Door) -> None:
        self.door = door
        self.requests: list[ChatRequest] = []

    @property
    def config(self) -> Config:
        return self.door.config

    def send(
        self, request: ChatRequest, *, on_plan: Callable[[str], None] | None = None
    ) -> AsyncIterator[StreamEvent | RouteEvent]:
        self.requests.append(request)
        return self.door.send(request, on_plan=on_plan)

    async def health(self) -> Mapping[str, ProviderState]:
        return await self.door.health()

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.door.remember(key, value, ttl_s)

    async def recall(self, key: str) -> bytes | None:
        return await self.door.recall(key)


@contextlib.asynccontextmanager
async def serving(door: GatewayDoor, **options: Any) -> AsyncIterator[str]:
    """Run the gateway over ``door`` on 127.0.0.1:<ephemeral>; yields its base URL."""
    app = build_app(door, **options)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", ws="none", log_config=None,
                            log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


class Gateway:
    """A running gateway: its door, base URL and ledger file."""

    def __init__(self, door: Recording, url: str, ledger: Path) -> None:
        self.door, self.url, self.ledger = door, url, ledger

    def client(self, key: str = KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def sim(self) -> Any:
        return self.door.door._sim  # type: ignore[attr-defined]

    async def requests(self) -> list[RequestRecord]:
        await self.door.door.flush()
        async with SqliteLedgerStore(self.ledger) as store:
            return await store.fetch_requests()


@contextlib.asynccontextmanager
async def gateway_at(tmp_path: Path, **options: Any) -> AsyncIterator[Gateway]:
    """A door on the test fleet with the gateway in front of it."""
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=ledger) as door:
        recording = Recording(door)
        async with serving(recording, **options) as url:
            yield Gateway(recording, url, ledger)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway with one virtual key, for tenant acme and caller svc."""
    async with gateway_at(tmp_path, virtual_keys={KEY: VirtualKey(tenant="acme", caller="svc")},
                          max_body_bytes=64 * 1024) as g:
        yield g


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll an async condition until it holds, failing after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.02)


# -- completions --------------------------------------------------------------------------------


async def test_non_stream_completion_carries_route_headers_and_tenant(gw: Gateway) -> None:
    """A plain completion answers in OpenAI's shape, with x-interlock headers and the key's tenant in the ledger."""
    async with gw.client() as client:
        raw = await client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    assert reply.model == "oa"
    assert raw.headers["x-interlock-model"] == "oa"
    assert raw.headers["x-interlock-provider"] == "p_openai"
    assert raw.headers["x-interlock-degraded"] == "false"
    assert raw.headers["x-interlock-hedged"] == "false"
    assert float(raw.headers["x-interlock-cost-cents"]) > 0
    (row,) = await gw.requests()
    assert (row.tenant, row.caller, row.outcome) == ("acme", "svc", "ok")
    assert reply.id == f"chatcmpl-{row.request_id}"


async def test_stream_yields_chunks_usage_and_route(gw: Gateway) -> None:
    """A stream sends content chunks, a finish chunk with the interlock extension, and the usage chunk."""
    async with gw.client() as client:
        stream = await client.chat.completions.create(
            model="default", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert finish[0].model_extra is not None
    assert finish[0].model_extra["interlock"]["model"] == "oa"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    (row,) = await gw.requests()
    assert row.outcome == "ok"


async def test_raw_stream_ends_with_header_comments_and_done(gw: Gateway) -> None:
    """On the wire a stream ends with one SSE comment per x-interlock header, then data: [DONE]."""
    body = {"model": "default", "messages": HELLO, "stream": True}
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        response = await http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-interlock-request-id"]
    text = response.text
    assert text.endswith("data: [DONE]\n\n")
    assert ": x-interlock-model: oa\n" in text
    assert ": x-interlock-provider: p_openai\n" in text
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert [c["usage"] for c in chunks] == [None] * len(chunks)  # like OpenAI's: null in every chunk
    assert all(c["choices"] for c in chunks)  # no usage chunk: none was asked for


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
async def test_forced_tool_call_round_trips(gw: Gateway, model: str, stream: bool) -> None:
    """A forced tool call comes back as OpenAI tool_calls, streamed or not, whatever the provider's format."""
    choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    tools: Any = [WEATHER]
    async with gw.client() as client:
        if not stream:
            reply = await client.chat.completions.create(model=model, messages=HELLO, tools=tools, tool_choice=choice)
            calls = reply.choices[0].message.tool_calls or []
            found = [(c.id, c.function.name, c.function.arguments) for c in calls]  # type: ignore[union-attr]
            finish = reply.choices[0].finish_reason
        else:
            chunks = await client.chat.completions.create(
                model=model, messages=HELLO, tools=tools, tool_choice=choice, stream=True
            )
            parts: dict[int, list[str]] = {}
            ids: dict[int, str] = {}
            finish = None
            async for chunk in chunks:
                for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    if delta.id:
                        ids[delta.index] = delta.id
                    fn = delta.function
                    parts.setdefault(delta.index, []).extend([fn.name or "", fn.arguments or ""] if fn else [])
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            found = [(ids[i], "get_weather", "".join(p).removeprefix("get_weather")) for i, p in parts.items()]
    assert finish == "tool_calls"
    assert len(found) == 1
    call_id, name, arguments = found[0]
    assert call_id
    assert name == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)


async def test_tool_results_and_response_format_reach_the_provider(gw: Gateway) -> None:
    """A tool-result turn and a json_schema response_format are carried through to the provider's request."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    messages: Any = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    async with gw.client() as client:
        reply = await client.chat.completions.create(
            model="oa", messages=messages, tools=[WEATHER], tool_choice="none", response_format=fmt
        )
    assert reply.choices[0].message.content
    body = gw.sim().stats("sim-oa-1").bodies[-1]
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert any(m.get("role") == "tool" and m.get("tool_call_id") == "call_1" for m in body["messages"])
    part = gw.door.requests[-1].messages[2].content[0]
    assert isinstance(part, ToolCallPart)
    assert part.name == "get_weather"


async def test_traceparent_is_continued_into_metadata(gw: Gateway) -> None:
    """A valid W3C traceparent lands in ChatRequest.metadata; an invalid one is dropped."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with gw.client() as client:
        await client.chat.completions.create(model="default", messages=HELLO, extra_headers={"traceparent": parent})
        await client.chat.completions.create(model="default", messages=HELLO, extra_headers={"traceparent": "junk"})
    assert gw.door.requests[0].metadata["traceparent"] == parent
    assert "traceparent" not in gw.door.requests[1].metadata


# -- errors -------------------------------------------------------------------------------------


async def test_unknown_model_is_404_in_openai_shape(gw: Gateway) -> None:
    """An unknown job or model is a 404 NotFoundError naming the model field."""
    async with gw.client() as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="no-such-job", messages=HELLO)
    assert info.value.status_code == 404
    assert info.value.param == "model"
    assert info.value.code == "model_not_found"
    assert info.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": []}, "messages"),
        ({"temperature": 5}, "temperature"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
         "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"n": 2}, "n"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ],
)
async def test_bad_input_is_400_naming_the_field(gw: Gateway, extra: dict[str, Any], param: str) -> None:
    """Malformed input is a 400 BadRequestError whose param names the offending field."""
    body: Any = {"model": "default", "messages": HELLO, **extra}
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(**body)
    assert info.value.param is not None
    assert info.value.param.startswith(param)
    assert await gw.requests() == []  # refused at the edge: the door never saw it


async def test_invalid_json_and_oversized_bodies_are_refused(gw: Gateway) -> None:
    """A body that is not JSON is a 400 naming the body; one past the size limit is a 413."""
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        bad = await http.post("/v1/chat/completions", content=b"{not json", headers=headers)
        big = await http.post("/v1/chat/completions", content=b"x" * (65 * 1024), headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "body"
    assert big.status_code == 413
    assert set(big.json()["error"]) == {"message", "type", "param", "code"}
    assert big.json()["error"]["code"] == "request_too_large"


async def test_unknown_or_missing_key_is_401_and_never_echoed(gw: Gateway) -> None:
    """An unknown key is a 401 AuthenticationError showing at most its first 6 characters; no key is 401 too."""
    wrong = "sk-ilk-wrong-key-abcdefghijklmnop"
    async with gw.client(wrong) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="default", messages=HELLO)
    assert info.value.code == "invalid_api_key"
    assert wrong not in info.value.message
    assert wrong[6:] not in info.value.message
    assert wrong[:6] in info.value.message
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        anonymous = await http.get("/v1/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"


async def test_exhausted_chain_of_rate_limits_is_429_with_retry_after(gw: Gateway) -> None:
    """When every candidate is rate limited the answer is a 429 in OpenAI's shape with the wait to honour."""
    gw.sim().script("sim-oa-1", [RateLimit(retry_after=3.0)])
    gw.sim().script("sim-an-1", [RateLimit(retry_after=3.0)])
    async with gw.client() as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="default", messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.response.headers["retry-after-ms"] == "3000"
    assert info.value.response.headers["x-should-retry"] == "true"
    (row,) = await gw.requests()
    assert row.outcome == "error"


class Failing:
    """A door whose every request fails with ``error`` before its first event; counts the requests."""

    def __init__(self, error: InterlockError) -> None:
        self.error = error
        self.sent = 0

    @property
    def config(self) -> Config:
        return parse_config(CONFIG)

    def send(
        self, request: ChatRequest, *, on_plan: Callable[[str], None] | None = None
    ) -> AsyncIterator[StreamEvent | RouteEvent]:
        self.sent += 1
        return self._fail()

    async def _fail(self) -> AsyncIterator[StreamEvent | RouteEvent]:
        raise self.error
        yield  # pragma: no cover - makes this an async generator

    async def health(self) -> Mapping[str, ProviderState]:
        return {}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("error", "status", "code", "should_retry"),
    [
        (BudgetExceeded("tenant:acme", 100.0, 100.0), 429, "budget_exceeded", "false"),
        (InterlockError("no budget left", kind=ErrorClass.BUDGET), 429, "budget_exceeded", "false"),
        (InterlockError("no allowed model", kind=ErrorClass.POLICY_REFUSAL), 403, "policy_refused", "false"),
        (InterlockError("the process ended", kind=ErrorClass.INTERRUPTED), 503, "interrupted", "true"),
    ],
)
async def test_budget_policy_and_interrupted_kinds_map_to_status_and_retry_hint(
    error: InterlockError, status: int, code: str, should_retry: str, stream: bool
) -> None:
    """Budget is a 429 not to retry, a policy refusal a 403 not to retry, an interrupted request a 503 to retry."""
    body = {"model": "default", "messages": HELLO, "stream": stream}
    async with serving(Failing(error)) as url, httpx2.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.headers["x-should-retry"] == should_retry
    assert response.json()["error"]["code"] == code
    assert "retry-after" not in response.headers


async def test_sdk_does_not_retry_an_exceeded_budget() -> None:
    """The openai SDK obeys x-should-retry: false and does not retry a budget's 429, though it retries 429s."""
    door = Failing(BudgetExceeded("tenant:acme", 100.0, 100.0))
    async with serving(door) as url, openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=2) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="default", messages=HELLO)
    assert info.value.code == "budget_exceeded"
    assert door.sent == 1


async def test_stream_failing_after_first_chunk_ends_with_error_event(gw: Gateway) -> None:
    """A stream that breaks after its first chunk ends with an SSE error event, which the SDK raises."""
    gw.sim().script("sim-oa-1", [Drop(after_tokens=3)])
    seen: list[str] = []
    async with gw.client() as client:
        stream = await client.chat.completions.create(model="strict", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen)
    assert isinstance(info.value.body, dict)
    assert set(info.value.body) == {"message", "type", "param", "code"}


async def test_unknown_path_and_method_answer_in_openai_shape(gw: Gateway) -> None:
    """Routing misses (404, 405) answer with OpenAI's error object too."""
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        missing = await http.get("/v1/nothing")
        wrong = await http.get("/v1/chat/completions")
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}


# -- cancellation ---------------------------------------------------------------------------------


async def p_slow_in_flight(gw: Gateway) -> int:
    return (await gw.door.health())["p_slow"].in_flight


async def test_client_gone_mid_stream_cancels_upstream(gw: Gateway) -> None:
    """Closing a stream after its first chunk ends the upstream call and records the request as cancelled."""
    body = {"model": "slow", "messages": HELLO, "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    async with (
        httpx2.AsyncClient(base_url=gw.url) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break
    assert await p_slow_in_flight(gw) <= 1

    async def upstream_closed() -> bool:
        return await p_slow_in_flight(gw) == 0 and gw.sim().stats("sim-slow-1").disconnected == 1

    await wait_for(upstream_closed)  # the simulated answer would run for 100 s

    async def recorded() -> bool:
        return [r.outcome for r in await gw.requests()] == ["cancelled"]

    await wait_for(recorded)


async def test_client_gone_during_non_stream_cancels_upstream(gw: Gateway) -> None:
    """A non-streamed request whose client times out is cancelled upstream and recorded as cancelled."""
    async with gw.client() as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="slow", messages=HELLO, timeout=0.5)

    async def recorded() -> bool:
        rows = await gw.requests()
        return [r.outcome for r in rows] == ["cancelled"] and await p_slow_in_flight(gw) == 0

    await wait_for(recorded)


async def test_client_gone_before_first_token_is_recorded_cancelled(gw: Gateway) -> None:
    """A client that leaves while the first token is late ends its request (cancelled) and the upstream call."""
    gw.sim().script("sim-oa-1", [StallFirstToken(3.0)])
    async with gw.client() as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="oa", messages=HELLO, stream=True, timeout=0.5)

    async def recorded() -> bool:
        rows = await gw.requests()
        gone = gw.sim().stats("sim-oa-1").disconnected
        return [r.outcome for r in rows] == ["cancelled"] and gone == 1

    await wait_for(recorded)


# -- models, health, open access ----------------------------------------------------------------


async def test_models_list_jobs_and_models(gw: Gateway) -> None:
    """/v1/models lists every job and model; retrieving one works and an unknown one is a 404."""
    async with gw.client() as client:
        listed = {m.id: m.owned_by async for m in client.models.list()}
        one = await client.models.retrieve("sim-an-1")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nope")
    assert listed == {"default": "interlock", "strict": "interlock", "slow": "interlock",
                      "oa": "p_openai", "an": "p_anthropic", "snail": "p_slow"}
    assert one.owned_by == "p_anthropic"


async def test_health_and_readiness(gw: Gateway) -> None:
    """/healthz answers for the process; /readyz lists each provider's breaker and health."""
    async with httpx2.AsyncClient(base_url=gw.url) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200
    providers = ready.json()["providers"]
    assert set(providers) == {"p_openai", "p_anthropic", "p_slow"}
    assert providers["p_openai"]["breaker"] == "closed"


async def test_without_keys_any_bearer_is_tenant_default(tmp_path: Path) -> None:
    """With no virtual keys, any bearer (or none) is served as tenant default."""
    async with gateway_at(tmp_path) as g:
        async with g.client("anything-at-all") as client:
            reply = await client.chat.completions.create(model="default", messages=HELLO)
        async with httpx2.AsyncClient(base_url=g.url) as http:
            anonymous = await http.post("/v1/chat/completions", json={"model": "default", "messages": HELLO})
        assert reply.choices[0].message.content
        assert anonymous.status_code == 200
        assert [r.tenant for r in await g.requests()] == ["default", "default"]


# -- pieces ---------------------------------------------------------------------------------------


def test_tool_call_done_without_fragments_is_sent_whole() -> None:
    """A tool call that arrives only whole (no fragments) is still streamed as one complete delta."""
    writer = ChunkWriter("r1", 0, "default", include_usage=False)
    data = writer.feed(ToolCallDone(3, "toolu_01Oslo", "get_weather", '{"city":"Oslo"}'))
    chunk = json.loads(data.removeprefix(b"data: "))
    call = chunk["choices"][0]["delta"]["tool_calls"][0]
    assert call == {"index": 0, "id": "toolu_01Oslo", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}


def test_mask_key_shows_six_characters_at_most() -> None:
    """A key is shown by its first 6 characters, and a short one not at all."""
    assert mask_key("sk-ilk-0123456789abcdef") == "sk-ilk..."
    assert mask_key("short") == "..."


def test_load_keys_maps_keys_and_never_quotes_them(tmp_path: Path) -> None:
    """The keys file maps each key to tenant and caller; an error names the key only by its mask."""
    good = tmp_path / "keys.toml"
    good.write_text(f'[keys."{KEY}"]\ntenant = "acme"\ncaller = "svc"\n')
    assert load_keys(good) == {KEY: VirtualKey(tenant="acme", caller="svc")}
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[keys."{KEY}"]\ntenant = 7\n')
    with pytest.raises(ConfigError) as info:
        load_keys(bad)
    assert KEY not in str(info.value)
    assert info.value.key == "keys.sk-ilk..."


async def test_serve_command_stops_gracefully_and_flushes(tmp_path: Path) -> None:
    """`interlock serve` serves its keys; on SIGTERM it closes the door, flushes the ledger and exits 0."""
    config, keys, ledger = tmp_path / "c.toml", tmp_path / "keys.toml", tmp_path / "serve.sqlite"
    config.write_text(CONFIG)
    keys.write_text(f'[keys."{KEY}"]\ntenant = "acme"\n')
    argv = [sys.executable, "-m", "interlock.actors.cli._serve", "--config", str(config), "--keys", str(keys),
            "--ledger", str(ledger), "--port", "0", "--log-level", "info"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(argv, env=env) as process:
        assert process.stderr is not None
        output = b""
        with anyio.fail_after(30):
            while b"Uvicorn running on http://127.0.0.1:" not in output:
                output += await process.stderr.receive()
        url = output.split(b"Uvicorn running on ")[1].split(b" ")[0].decode()
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
            reply = await client.chat.completions.create(model="default", messages=HELLO)
        assert reply.choices[0].message.content
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            rest = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
    assert code == 0
    assert b"ledger flushed" in rest
    assert KEY.encode() not in output + rest
    async with SqliteLedgerStore(ledger) as store:
        rows = await store.fetch_requests()
    assert [(r.tenant, r.outcome) for r in rows] == [("acme", "ok")]


async def test_sensitivity_header_reaches_the_router(gw: Gateway) -> None:
    """x-interlock-sensitivity is carried into the request (pii never leaves local models); a bad one is a 400."""
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="default", messages=HELLO, extra_headers={"x-interlock-sensitivity": "secret"}
            )
        assert info.value.param == "x-interlock-sensitivity"
        # No local model in this fleet: a PII request has nowhere to go, and says so, naming the rule.
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(
                model="default", messages=HELLO, extra_headers={"x-interlock-sensitivity": "pii"}
            )
    assert refused.value.code == "policy_refused"
    assert refused.value.param == "pii"
    assert refused.value.response.headers["x-should-retry"] == "false"
    rows = await gw.requests()
    assert [r.outcome for r in rows] == ["error"]

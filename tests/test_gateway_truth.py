"""The gateway's wire read back with the official ``openai`` SDK, over real upstreams on 127.0.0.1.

Each upstream writes a provider's documented SSE bytes one byte per write; a real ``Door`` routes
to it and the gateway re-emits OpenAI's wire. What is checked is what an SDK user sees: tool-call
indexes that the SDK's stream accumulator can fold (dense from 0 whatever the provider's block
index), ids unique per call across turns, refusals in ``refusal`` and never in ``content``,
``usage`` null when the provider sent none, and options interlock cannot honour refused by name.
The README's and docs/errors.md's error tables are the gateway's own table, rendered.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest
from aiohttp import web

import interlock
from interlock._errors import ErrorClass
from interlock.adapters.gateway._failures import FAILURES, error_table
from interlock.policies._config import parse_config
from tests.loopback import serve
from tests.test_gateway import serving

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HELLO: Any = [{"role": "user", "content": "weather in Oslo and Paris?"}]


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _anthropic_two_calls() -> bytes:
    """A text block, then two tool_use blocks (content-block indexes 1 and 2), as the Messages API streams it."""
    start = {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-x-20250101",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 1},
    }}  # fmt: skip
    out = [_sse(start, "message_start")]
    out.append(_sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start"))
    text = {"type": "text_delta", "text": "Je regarde \u00e0 Oslo et Paris."}
    out.append(_sse({"type": "content_block_delta", "index": 0, "delta": text}, "content_block_delta"))
    out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    for index, (call_id, city) in enumerate([("toolu_01A", "Oslo"), ("toolu_01B", "Paris")], start=1):
        block = {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {}}
        out.append(_sse({"type": "content_block_start", "index": index, "content_block": block},
                        "content_block_start"))
        for piece in ('{"city": ', f'"{city}"', "}"):
            delta = {"type": "input_json_delta", "partial_json": piece}
            out.append(_sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    out.append(_sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                     "usage": {"output_tokens": 40}}, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


def _gemini_two_calls() -> bytes:
    """Two functionCall parts in one candidate; Gemini gives function calls no id."""
    parts = [{"functionCall": {"name": "get_weather", "args": {"city": c}}} for c in ("Oslo", "Paris")]
    body = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21},
        "modelVersion": "gemini-x-001",
    }
    return _sse(body)


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x-2025-06-01",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


OPENAI_REFUSAL = b"".join([
    _openai_chunk({"role": "assistant", "content": None, "refusal": ""}),
    _openai_chunk({"refusal": "I can\u2019t help with that."}),
    _openai_chunk({}, finish="stop"),
    b"data: [DONE]\n\n",
])  # no usage chunk: the upstream sent none
OPENAI_TEXT_NO_USAGE = b"".join([
    _openai_chunk({"role": "assistant", "content": ""}),
    _openai_chunk({"content": "Hej d\u00e5!"}),
    _openai_chunk({}, finish="stop"),
    b"data: [DONE]\n\n",
])


class ByteUpstream:
    """Answers every call with ``body``, written one byte per write; keeps the request bodies."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.bodies: deque[dict[str, Any]] = deque()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(json.loads(await request.read()))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(len(self.body)):
            await response.write(self.body[i : i + 1])
        await response.write_eof()
        return response


def _config(url: str, kind: str, *, cache: bool = False) -> str:
    return (
        f'[providers.up]\nkind = "{kind}"\nbase_url = "{url}"\napi_key_env = "TEST_KEY"\n'
        "probe = { interval_s = 3600 }\n"
        '[models.m]\nprovider = "up"\nid = "m-2025-01-01"\nclass = "fast"\ncontext_window = 100000\n'
        "max_output_tokens = 1000\nprice = { input = 1.0, output = 2.0 }\n"
        '[jobs.default]\nchain = ["m"]\n' + ("cache_ttl_s = 600\n" if cache else "")
    )


@pytest.fixture
def make_gateway(tmp_path: Path) -> Any:
    calls: list[ByteUpstream] = []  # each gateway's upstream, for the tests that count its calls
    @contextlib.asynccontextmanager
    async def opened(body: bytes, kind: str, *, cache: bool = False) -> AsyncIterator[openai.AsyncOpenAI]:
        upstream = ByteUpstream(body)
        calls.append(upstream)
        async with serve(upstream.handle) as url:
            base = url + "/v1" if kind == "openai_compatible" else url
            config = parse_config(_config(base, kind, cache=cache))
            environ = {"TEST_KEY": "sk-test-upstream"}
            async with (
                interlock.open(config, ledger_path=tmp_path / "ledger.sqlite", environ=environ) as door,
                serving(door) as gateway,
                openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="sk-any", max_retries=0) as client,
            ):
                yield client

    opened.upstreams = calls  # type: ignore[attr-defined]
    return opened


async def test_anthropic_tool_calls_stream_with_dense_indexes_the_sdk_accumulates(make_gateway: Any) -> None:
    """Block indexes 1 and 2 go out as tool-call indexes 0 and 1: the SDK's own accumulator folds them."""
    async with make_gateway(_anthropic_two_calls(), "anthropic") as client:
        seen: list[int] = []
        with anyio.fail_after(15):
            async with client.chat.completions.stream(model="default", messages=HELLO, tools=[WEATHER]) as stream:
                async for event in stream:
                    if event.type == "chunk" and event.chunk.choices:
                        seen.extend(c.index for c in event.chunk.choices[0].delta.tool_calls or [])
                final = await stream.get_final_completion()
    assert sorted(set(seen)) == [0, 1]
    message = final.choices[0].message
    assert message.content == "Je regarde \u00e0 Oslo et Paris."
    calls = message.tool_calls or []
    assert [(c.id, json.loads(c.function.arguments)["city"]) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_01A", "Oslo"), ("toolu_01B", "Paris"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_tool_calls_without_provider_ids_get_ids_unique_across_turns(make_gateway: Any) -> None:
    """Gemini sends no call ids: every call of every turn gets its own, streamed or not."""
    async with make_gateway(_gemini_two_calls(), "gemini") as client:
        ids: list[str] = []
        with anyio.fail_after(15):
            for _ in range(2):
                reply = await client.chat.completions.create(model="default", messages=HELLO, tools=[WEATHER])
                ids.extend(c.id for c in reply.choices[0].message.tool_calls or [])
            async with client.chat.completions.stream(model="default", messages=HELLO, tools=[WEATHER]) as stream:
                final = await stream.get_final_completion()
            ids.extend(c.id for c in final.choices[0].message.tool_calls or [])
    assert len(ids) == 6
    assert len(set(ids)) == 6
    assert all(i.startswith("call_") and len(i) > len("call_0") for i in ids)


async def test_a_refusal_goes_out_as_refusal_never_as_content(make_gateway: Any) -> None:
    """OpenAI's refusal comes back in ``refusal`` (``delta.refusal`` when streamed), with ``content`` null."""
    async with make_gateway(OPENAI_REFUSAL, "openai_compatible") as client:
        with anyio.fail_after(15):
            reply = await client.chat.completions.create(model="default", messages=HELLO)
            chunks = [c async for c in await client.chat.completions.create(
                model="default", messages=HELLO, stream=True)]  # fmt: skip
    assert reply.choices[0].message.refusal == "I can\u2019t help with that."
    assert reply.choices[0].message.content is None
    streamed = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert streamed == "I can\u2019t help with that."
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_usage_the_upstream_never_sent_is_null_not_zeros(make_gateway: Any) -> None:
    """Without upstream usage, ``usage`` is null in the answer and in the usage chunk; the cost is an estimate."""
    async with make_gateway(OPENAI_TEXT_NO_USAGE, "openai_compatible") as client:
        with anyio.fail_after(15):
            raw = await client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
            chunks = [c async for c in await client.chat.completions.create(
                model="default", messages=HELLO, stream=True, stream_options={"include_usage": True})]  # fmt: skip
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hej d\u00e5!"
    assert reply.usage is None
    assert raw.headers["x-interlock-usage-estimated"] == "true"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices == []  # the usage chunk is there, saying "unknown"


async def test_logprobs_is_refused_by_name_not_silently_dropped(make_gateway: Any) -> None:
    """``logprobs`` cannot be honoured: a 400 naming the parameter, not to be retried, before any upstream call."""
    async with make_gateway(OPENAI_TEXT_NO_USAGE, "openai_compatible") as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="default", messages=HELLO, logprobs=True)
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == "logprobs"
    assert info.value.response.headers["x-should-retry"] == "false"


async def test_stream_headers_carry_the_request_id_and_first_choice(make_gateway: Any) -> None:
    """A stream's headers name its request id and the job's first choice; the rest is final only at the end."""
    async with make_gateway(OPENAI_TEXT_NO_USAGE, "openai_compatible") as client:
        base = str(client.base_url).rstrip("/")
        async with httpx2.AsyncClient() as http:
            body = {"model": "default", "messages": HELLO, "stream": True}
            async with http.stream("POST", base + "/chat/completions", json=body,
                                   headers={"authorization": "Bearer sk-any"}) as response:
                text = "".join([part async for part in response.aiter_text()])
    request_id = response.headers["x-interlock-request-id"]
    assert request_id
    assert response.headers["x-interlock-first-choice"] == "m"
    assert "x-interlock-model" not in response.headers  # final only at the end: in the stream, not the headers
    assert f'"request_id":"{request_id}"' in text
    assert f": x-interlock-request-id: {request_id}\n" in text


def test_every_error_kind_has_one_row() -> None:
    """Every ``ErrorClass`` is answered by exactly one row of the gateway's table."""
    kinds = [row.kind for row in FAILURES]
    assert len(kinds) == len(set(kinds))
    assert {str(k) for k in ErrorClass} <= set(kinds)


@pytest.mark.parametrize("document", ["README.md", "docs/errors.md"])
def test_documented_error_table_is_the_gateways_own(document: str) -> None:
    """The error tables in the docs are ``error_table()`` verbatim: the docs cannot drift from the code."""
    assert error_table() in (ROOT / document).read_text()


async def test_an_input_no_window_holds_is_context_length_exceeded(make_gateway: Any) -> None:
    """No candidate's context window holds the input: OpenAI's ``context_length_exceeded``, a 400 not to retry."""
    async with make_gateway(OPENAI_TEXT_NO_USAGE, "openai_compatible") as client:
        huge: Any = [{"role": "user", "content": "word " * 100_000}]  # ~125k tokens by any estimate; windows hold 100k
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="default", messages=huge)
    assert info.value.code == "context_length_exceeded"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "context window" in info.value.message


def test_documented_refused_parameters_are_the_gateways_own() -> None:
    """docs/errors.md lists exactly the chat options the gateway refuses by name."""
    from interlock.adapters.gateway._requests import UNSUPPORTED_PARAMETERS

    text = (ROOT / "docs/errors.md").read_text()
    section = text.split("## Parameters interlock refuses", 1)[1].split("\n## ", 1)[0]
    listed = [line[3:-1] for line in section.splitlines() if line.startswith("- `") and line.endswith("`")]
    assert listed == list(UNSUPPORTED_PARAMETERS)


async def test_a_cache_hit_names_who_made_it_in_headers_and_final_chunk(make_gateway: Any) -> None:
    """A repeat is served from the cache, and says so: same model and provider, flagged as a hit, zero cost."""
    async with make_gateway(OPENAI_TEXT_NO_USAGE, "openai_compatible", cache=True) as client:
        first = await client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
        again = await client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
        chunks = [c async for c in await client.chat.completions.create(model="default", messages=HELLO, stream=True)]
    (upstream,) = make_gateway.upstreams
    assert len(upstream.bodies) == 1  # the repeats called nobody
    assert first.headers["x-interlock-cache-hit"] == "false"
    assert again.headers["x-interlock-cache-hit"] == "true"
    assert (again.headers["x-interlock-model"], again.headers["x-interlock-provider"]) == ("m", "up")
    assert float(again.headers["x-interlock-cost-cents"]) == 0.0
    assert again.parse().choices[0].message.content == "Hej d\u00e5!"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    info = final.model_extra["interlock"]  # type: ignore[index]
    assert (info["cache_hit"], info["model"], info["provider"]) == (True, "m", "up")

"""Malformed events in provider streams, over real HTTP on 127.0.0.1, under adversarial chunking.

Each provider's documented SSE wire (OpenAI chat.completion.chunk data lines ending in
``data: [DONE]``; Anthropic's named Messages events; Gemini's ``alt=sse`` data lines with CRLF)
is served by a loopback aiohttp server with malformed events inserted. One malformed event in a
healthy stream is skipped and counted on the ``Finish``; a stream of garbage, a malformed error
event, or a malformed event whose loss would corrupt what the decoder assembles still fails, with
a typed ``MidStreamError`` naming the provider and never the API key. The adversarial chunking runs
in lockstep: the server writes the next piece only once the decoder has been fed the last one, so
the decoder sees exactly the split the test chose (two pieces cut at every position, or one byte
per chunk).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web
from loopback import SSE_HEADERS, Handler, adapter, run, serve, text_of

from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
from interlock._types import ChatRequest, Finish, StreamEvent, ToolCallDone, Usage
from interlock.adapters.providers._codec import MALFORMED_LIMIT, Codec, StreamDecoder, WireRequest
from interlock.adapters.providers._http_client import TransportName
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec

KEY = "sk-TESTKEY-0123456789abcdefghij"
TEXT = ["Hello", " there", ",", " world", "!"]
PROVIDERS = ["openai", "anthropic", "gemini"]

# -- the three wires -------------------------------------------------------------------------


def _openai(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4.1",
        "choices": choices,
        "usage": usage,  # null in every chunk but the last: the decoder must not mistake it for usage
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _anthropic(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _text_delta(text: str) -> bytes:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return _anthropic("content_block_delta", delta)


def _gemini(parts: list[dict[str, Any]], finish: str | None = None, output: int = 1) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 5, "candidatesTokenCount": output, "totalTokenCount": 5 + output}
    body = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n\r\n"


def head(provider: str) -> list[bytes]:
    """The events before the answer's text: OpenAI's role chunk, Anthropic's message and block starts."""
    if provider == "openai":
        return [_openai({"role": "assistant", "content": "", "refusal": None})]
    if provider == "anthropic":
        message = {"type": "message", "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        return [
            _anthropic("message_start", {"type": "message_start", "message": message}),
            _anthropic("content_block_start", block),
            _anthropic("ping", {"type": "ping"}),
        ]
    return []


def words(provider: str) -> list[bytes]:
    """One event per word of ``TEXT``."""
    if provider == "openai":
        return [_openai({"content": w}) for w in TEXT]
    if provider == "anthropic":
        return [_text_delta(w) for w in TEXT]
    return [_gemini([{"text": w}], output=i + 1) for i, w in enumerate(TEXT)]


def tail(provider: str) -> list[bytes]:
    """The events that end the answer: finish reason, usage, and OpenAI's [DONE]."""
    if provider == "openai":
        usage = {"prompt_tokens": 5, "completion_tokens": 5}
        return [_openai({}, "stop"), _openai(None, usage=usage), b"data: [DONE]\n\n"]
    if provider == "anthropic":
        end = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
        return [
            _anthropic("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _anthropic("message_delta", end),
            _anthropic("message_stop", {"type": "message_stop"}),
        ]
    return [_gemini([], "STOP", output=5)]


BROKEN = {
    "openai": b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","usage":null,'
    b'"choices":[{"index":0,"delta":{"content":"%s\n\n',
    "anthropic": b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"%s\n\n',
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"%s\r\n\r\n',
}
BROKEN_ERROR = {
    "openai": b'data: {"error":{"type":"server_error","message":"%s\n\n',
    "anthropic": b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"%s\n\n',
    "gemini": b'data: {"error":{"code":503,"status":"UNAVAILABLE","message":"%s\r\n\r\n',
}


def malformed(provider: str) -> bytes:
    """One event whose JSON breaks off mid-string (and echoes the API key), in the provider's framing."""
    return BROKEN[provider] % KEY.encode()


def body(provider: str, bad: int = 1, at: int = 2) -> bytes:
    """A whole answer of ``TEXT`` with ``bad`` malformed events after the first ``at`` words."""
    spoken = words(provider)
    return b"".join([*head(provider), *spoken[:at], *[malformed(provider)] * bad, *spoken[at:], *tail(provider)])


def codec_of(provider: str) -> Codec:
    """The provider's codec, with the test key."""
    if provider == "openai":
        return OpenAICodec("openai", Secret(KEY))
    if provider == "anthropic":
        return AnthropicCodec("anthropic", Secret(KEY))
    return GeminiCodec("gemini", Secret(KEY))


# -- lockstep chunking -----------------------------------------------------------------------


class Lockstep:
    """A codec whose decoders count the bytes they are fed, so that a server can wait for a read."""

    def __init__(self, inner: Codec) -> None:
        self.provider = inner.provider
        self.inner = inner
        self.fed = 0
        self.feeds = 0
        self._waiter: tuple[int, anyio.Event] | None = None

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        return self.inner.encode(request, model_id, stream=stream)

    def stream_decoder(self, model_id: str) -> StreamDecoder:
        self.fed = self.feeds = 0
        return _Counting(self, self.inner.stream_decoder(model_id))

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        return self.inner.decode_response(body, model_id)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        return self.inner.classify(status, headers, body, model_id)

    def probe_request(self) -> WireRequest:
        return self.inner.probe_request()

    def took(self, chunk: bytes) -> None:
        """The decoder was fed ``chunk``: wake a server waiting for this many bytes."""
        self.fed += len(chunk)
        self.feeds += 1
        if self._waiter is not None and self.fed >= self._waiter[0]:
            self._waiter[1].set()

    async def wait_fed(self, total: int) -> None:
        """Return once the decoder has been fed ``total`` bytes (within 5 s)."""
        if self.fed >= total:
            return
        self._waiter = (total, anyio.Event())
        with anyio.fail_after(5):
            await self._waiter[1].wait()


class _Counting:
    def __init__(self, codec: Lockstep, inner: StreamDecoder) -> None:
        self._codec = codec
        self._inner = inner

    @property
    def partial_text(self) -> str:
        return self._inner.partial_text

    @property
    def usage_so_far(self) -> Usage | None:
        return self._inner.usage_so_far

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        self._codec.took(chunk)  # before the inner feed: a decoder that raises must not hang the server
        return self._inner.feed(chunk)

    def close(self) -> list[StreamEvent]:
        return self._inner.close()


def lockstep(data: bytes, cuts: list[int], codec: Lockstep) -> Handler:
    """A handler streaming ``data`` cut at ``cuts``, each piece only once the decoder has the last."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        start = 0
        for end in [*cuts, len(data)]:
            await response.write(data[start:end])
            await codec.wait_fed(end)
            start = end
        await response.write_eof()
        return response

    return handler


def whole(data: bytes) -> Handler:
    """A handler streaming ``data`` in one write."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(data)
        await response.write_eof()
        return response

    return handler


def assert_complete(events: list[StreamEvent], skipped: int) -> None:
    """The whole text of ``TEXT``, then a Finish(stop) counting ``skipped`` malformed events."""
    assert text_of(events) == "".join(TEXT)
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.skipped_events) == ("stop", skipped)
    assert finish.provider_reason in ("stop", "end_turn", "STOP")


def assert_no_key(error: ProviderError) -> None:
    """No text of ``error`` shows the API key."""
    shown = [str(error), repr(error), error.detail, getattr(error, "partial", "")]
    assert all(KEY not in text for text in shown)


# -- one malformed event is skipped ----------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_one_malformed_event_is_skipped_at_every_split_position(provider: str) -> None:
    """Cut in two at every byte, a stream with one malformed event gives the whole text and one counted skip."""
    data = body(provider)
    codec = Lockstep(codec_of(provider))
    cuts: list[int] = []
    seen: list[tuple[list[StreamEvent], ProviderError | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        return await lockstep(data, cuts, codec)(request)

    async with serve(handler) as url, adapter(url, codec) as made:
        for cut in range(1, len(data)):
            cuts[:] = [cut]
            seen.append(await run(made, "m-1"))
            assert codec.fed == len(data)
    for cut, (events, error) in enumerate(seen, start=1):
        assert error is None, (cut, error)
        assert_complete(events, skipped=1)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_one_malformed_event_is_skipped_one_byte_per_chunk(provider: str, transport: TransportName) -> None:
    """Fed one byte per network chunk, a stream with one malformed event gives the whole text and one counted skip."""
    data = body(provider)
    codec = Lockstep(codec_of(provider))
    async with serve(lockstep(data, list(range(1, len(data))), codec)) as url, adapter(url, codec, transport) as made:
        events, error = await run(made, "m-1")
    assert error is None
    assert codec.feeds == len(data)
    assert_complete(events, skipped=1)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_a_healthy_stream_counts_no_skip(provider: str) -> None:
    """The same stream without its malformed event ends with a Finish that counts none."""
    async with serve(whole(body(provider, bad=0))) as url, adapter(url, codec_of(provider)) as made:
        events, error = await run(made, "m-1")
    assert error is None
    assert_complete(events, skipped=0)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_skips_up_to_the_bound_pass_and_one_more_fails(provider: str) -> None:
    """MALFORMED_LIMIT malformed events are skipped and counted; one more fails the stream, naming the provider."""
    codec = codec_of(provider)
    async with serve(whole(body(provider, bad=MALFORMED_LIMIT))) as url, adapter(url, codec) as made:
        events, error = await run(made, "m-1")
    assert error is None
    assert_complete(events, skipped=MALFORMED_LIMIT)
    async with serve(whole(body(provider, bad=MALFORMED_LIMIT + 1))) as url, adapter(url, codec) as made:
        events, error = await run(made, "m-1")
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.provider, error.partial) == (ErrorClass.SERVER_ERROR, provider, "".join(TEXT[:2]))
    assert f"more than {MALFORMED_LIMIT} malformed events" in error.detail
    assert provider in str(error)
    assert not any(isinstance(e, Finish) for e in events)
    assert_no_key(error)


def test_a_finish_encoded_before_the_count_existed_still_decodes() -> None:
    """A Finish stored without skipped_events decodes with a count of 0; one with a count round-trips."""
    assert msgspec.json.decode(b'{"type":"finish","reason":"stop"}', type=Finish) == Finish("stop", skipped_events=0)
    counted = Finish("length", skipped_events=2)
    assert msgspec.json.decode(msgspec.json.encode(counted), type=Finish) == counted


# -- what still fails ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_a_stream_of_garbage_fails_naming_the_provider(provider: str) -> None:
    """A body of nothing but malformed events, fed one byte per chunk, is a MidStreamError naming the provider."""
    data = malformed(provider) * 20
    codec = Lockstep(codec_of(provider))
    async with serve(lockstep(data, list(range(1, len(data))), codec)) as url, adapter(url, codec) as made:
        events, error = await run(made, "m-1")
    assert events == []
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.provider, error.model, error.partial) == (ErrorClass.SERVER_ERROR, provider, "m-1", "")
    assert provider in str(error)
    assert_no_key(error)


def malformed_structure(provider: str) -> bytes:
    """A stream whose second event starts a tool call and whose third breaks inside that call."""
    if provider == "openai":
        function = {"name": "f", "arguments": ""}
        started = _openai({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": function}]})
        broken = b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"ar\n\n'
    elif provider == "anthropic":
        block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        started = _anthropic("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
        broken = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input\n\n'
    else:
        started = b""  # a Gemini function call comes whole: the broken chunk is the call itself
        broken = b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"ci\r\n\r\n'
    return b"".join([*head(provider), words(provider)[0], started, broken, *tail(provider)])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_a_malformed_error_event_fails(provider: str) -> None:
    """An in-band error that does not decode fails the stream as a malformed error event, without quoting it."""
    spoken = words(provider)
    data = b"".join([*head(provider), *spoken[:2], BROKEN_ERROR[provider] % KEY.encode(), *spoken[2:], *tail(provider)])
    async with serve(whole(data)) as url, adapter(url, codec_of(provider)) as made:
        events, error = await run(made, "m-1")
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.provider) == (ErrorClass.SERVER_ERROR, provider)
    assert "malformed error event" in error.detail
    assert error.partial == text_of(events) == "".join(TEXT[:2])
    assert_no_key(error)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.anyio
async def test_a_malformed_event_inside_a_tool_call_fails(provider: str) -> None:
    """A malformed event that carried part of a tool call cannot be skipped: the call would be lost or corrupted."""
    async with serve(whole(malformed_structure(provider))) as url, adapter(url, codec_of(provider)) as made:
        events, error = await run(made, "m-1")
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.provider, error.partial) == (ErrorClass.SERVER_ERROR, provider, TEXT[0])
    assert "cannot be recovered" in error.detail
    assert not any(isinstance(e, ToolCallDone | Finish) for e in events)

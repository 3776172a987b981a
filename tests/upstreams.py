"""Misbehaving upstreams for tests: real aiohttp servers on 127.0.0.1 speaking the providers' documented wires.

``Upstream`` answers OpenAI chat completions (``POST /v1/chat/completions``, SSE chunks then
``data: [DONE]``) or Anthropic messages (``POST /v1/messages``, named SSE events), streaming
``answer`` one word per event, with a scripted behaviour per request: finish, cut the connection
after some words, answer a different text, or refuse with a status. An Anthropic upstream honours
an assistant prefill as the Messages API documents: the reply continues the prefilled text.
Every request body is kept, parsed, in ``bodies``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web

Wire = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Finish:
    """Stream the whole answer (or ``text`` instead) and end it properly."""

    text: str | None = None


@dataclass(frozen=True)
class Cut:
    """Stream ``after_words`` words, then drop the connection (no end, no usage)."""

    after_words: int


@dataclass(frozen=True)
class Refuse:
    """Answer ``status`` with the wire's error body before any byte of a stream."""

    status: int
    message: str = "refused"


Step = Finish | Cut | Refuse


def words(text: str) -> list[str]:
    """``text`` as the pieces a stream sends: each word with the space before it (the first without)."""
    parts = text.split(" ")
    return [parts[0], *(" " + p for p in parts[1:])]


@dataclass
class Upstream:
    """One loopback provider; ``script`` steps are used one per request, then ``Finish()``."""

    wire: Wire
    answer: str
    script: deque[Step] = field(default_factory=deque)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def base_url(self) -> str:
        return self.url + "/v1" if self.wire == "openai" else self.url

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        self.bodies.append(body)
        step = self.script.popleft() if self.script else Finish()
        if isinstance(step, Refuse):
            return web.json_response(_error(self.wire, step), status=step.status)
        text = step.text if isinstance(step, Finish) and step.text is not None else self.answer
        if self.wire == "anthropic":
            text = _after_prefill(body, text)
        pieces = words(text) if text else []
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_head(self.wire))
        limit = step.after_words if isinstance(step, Cut) else len(pieces)
        for piece in pieces[:limit]:
            await response.write(_delta(self.wire, piece))
        if isinstance(step, Cut):
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write(_tail(self.wire, len(pieces)))
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def serving(*upstreams: Upstream) -> AsyncIterator[None]:
    """Each upstream on its own 127.0.0.1:<ephemeral> port, for the block's duration."""
    runners: list[web.AppRunner] = []
    try:
        for upstream in upstreams:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", upstream.handle)
            app.router.add_post("/v1/messages", upstream.handle)
            runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield
    finally:
        for runner in runners:
            await runner.cleanup()


def _after_prefill(body: dict[str, Any], text: str) -> str:
    """What an Anthropic model says after an assistant prefill: the rest of its answer."""
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        return text
    content = messages[-1]["content"]
    prefill = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    return text[len(prefill):] if text.startswith(prefill) else text


def _error(wire: Wire, step: Refuse) -> dict[str, Any]:
    if wire == "openai":
        return {"error": {"message": step.message, "type": "invalid_request_error", "code": None}}
    return {"type": "error", "error": {"type": "invalid_request_error", "message": step.message}}


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + msgspec.json.encode(data) + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    data: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    data["choices"] = choices
    if usage is not None:
        data["usage"] = usage
    return _sse(data)


def _head(wire: Wire) -> bytes:
    if wire == "openai":
        return _chunk({"role": "assistant", "content": ""})
    start = {"type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}
    return _sse({"type": "message_start", "message": start}, "message_start") + _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )


def _delta(wire: Wire, piece: str) -> bytes:
    if wire == "openai":
        return _chunk({"content": piece})
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
    return _sse(delta, "content_block_delta")


def _tail(wire: Wire, tokens: int) -> bytes:
    if wire == "openai":
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        return _chunk({}, "stop") + _chunk({}, usage=usage) + b"data: [DONE]\n\n"
    return (
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + _sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": tokens}},
            "message_delta",
        )
        + _sse({"type": "message_stop"}, "message_stop")
    )

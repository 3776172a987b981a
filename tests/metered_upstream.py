"""A loopback OpenAI-compatible upstream that bills like a byte-level BPE tokenizer at its worst.

``MeteredUpstream`` answers ``POST /v1/chat/completions`` with an SSE stream of single-token
pieces and the usage chunk at the end, and keeps its own tally of the tokens it billed: the
figure a provider's invoice would show, against which interlock's books are checked.

Its prompt count is the worst case a byte-level BPE tokenizer can produce: one token per UTF-8
byte of every message's text, plus OpenAI's documented framing (3 tokens per message, 3 to prime
the reply). CJK text and emoji cost 3-4 tokens per character under it, where four characters per
token is what an estimate for English assumes. Its output honours ``max_tokens`` as providers do:
one token per piece, never more pieces than the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens this upstream bills for a chat completions ``body``."""
    total = _REPLY_PRIMING
    for message in body.get("messages") or []:
        content = message.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        total += _PER_MESSAGE + len(text.encode("utf-8"))
    return total


@dataclass
class MeteredUpstream:
    """One loopback provider answering ``answer_tokens`` pieces, ``per_token_s`` apart; ``url`` once serving."""

    answer_tokens: int = 40
    per_token_s: float = 0.002
    piece: str = "好"
    url: str = ""
    requests: int = 0
    billed_input: int = 0
    billed_output: int = 0

    def base_url(self) -> str:
        """The base URL an ``openai_compatible`` provider is configured with."""
        return self.url + "/v1"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or self.answer_tokens
        count = min(self.answer_tokens, int(limit))
        usage_in = prompt_tokens(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        for _ in range(count):
            await asyncio.sleep(self.per_token_s)  # the upstream's own pace: calls overlap as real ones do
            await response.write(_chunk({"content": self.piece}))
        usage = {"prompt_tokens": usage_in, "completion_tokens": count, "total_tokens": usage_in + count}
        await response.write(_chunk({}, "stop") + _chunk({}, usage=usage) + b"data: [DONE]\n\n")
        await response.write_eof()
        # Billed once the answer is complete: a provider charges for what it generated.
        self.requests += 1
        self.billed_input += usage_in
        self.billed_output += count
        return response


@contextlib.asynccontextmanager
async def serving(upstream: MeteredUpstream) -> AsyncIterator[MeteredUpstream]:
    """``upstream`` on 127.0.0.1:<ephemeral> for the block's duration."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield upstream
    finally:
        await runner.cleanup()


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    data: dict[str, Any] = {"id": "chatcmpl-metered", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    data["choices"] = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        data["usage"] = usage
    return b"data: " + msgspec.json.encode(data) + b"\n\n"

"""What the door hands out is what the provider said: refusals apart, usage unknown when unsent,
usage before a failure billed, the provider's own finish reason and model id, cache hits that say
who made them, and a resumed answer cached whole.

The upstreams are real aiohttp servers on 127.0.0.1 writing the providers' documented SSE bytes
one byte per write (cuts inside UTF-8 sequences and inside ``data:`` lines); the ledger is a real
SQLite file read back with ``sqlite3``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

import interlock
from interlock.policies._config import parse_config
from tests.loopback import serve
from tests.upstreams import Cut, Upstream, serving

pytestmark = pytest.mark.anyio

SERVED_ID = "gpt-x-2025-06-01"  # the dated model behind the floating alias the config names


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": SERVED_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return _sse(body)


USAGE = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
OPENAI_BODIES: dict[str, bytes] = {
    # Structured-outputs refusal, as OpenAI streams it: content null, the refusal in its own member.
    "refusal": b"".join([
        _chunk({"role": "assistant", "content": None, "refusal": ""}),
        _chunk({"refusal": "I can\u2019t help with th"}),
        _chunk({"refusal": "at \u2014 sorry."}),
        _chunk({}, finish="stop"),
        _chunk({}, usage=USAGE),
        b"data: [DONE]\n\n",
    ]),
    # No usage chunk at all (the client did not ask, or the server does not send one).
    "no_usage": b"".join([
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Bonjour, \u00e7a va\u202f?"}),
        _chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]),
}


class ByteUpstream:
    """Answers every call with the next scripted body, written one byte per write."""

    def __init__(self) -> None:
        self.script: deque[bytes] = deque()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        body = self.script.popleft()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(len(body)):
            await response.write(body[i : i + 1])
        await response.write_eof()
        return response


def _config(url: str, kind: str, model_id: str) -> str:
    key = '\napi_key_env = "TEST_KEY"'
    return (
        f'[providers.up]\nkind = "{kind}"\nbase_url = "{url}"{key}\nprobe = {{ interval_s = 3600 }}\n'
        f'[models.m]\nprovider = "up"\nid = "{model_id}"\nallow_floating = true\nclass = "fast"\n'
        "context_window = 100000\nmax_output_tokens = 1000\nprice = { input = 1.0, output = 2.0 }\n"
        '[jobs.default]\nchain = ["m"]\n'
    )


@pytest.fixture
async def openai_door(tmp_path: Path) -> AsyncIterator[tuple[interlock.Door, ByteUpstream, Path]]:
    upstream = ByteUpstream()
    ledger = tmp_path / "ledger.sqlite"
    async with serve(upstream.handle) as url:
        config = parse_config(_config(f"{url}/v1", "openai_compatible", "gpt-x"))
        async with interlock.open(config, ledger_path=ledger, environ={"TEST_KEY": "sk-test"}) as door:
            yield door, upstream, ledger


def _row(ledger: Path, table: str, columns: str) -> tuple[Any, ...]:
    with sqlite3.connect(ledger) as db:
        rows = db.execute(f"SELECT {columns} FROM {table}").fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


async def test_a_refusal_is_its_own_channel_never_text(
    openai_door: tuple[interlock.Door, ByteUpstream, Path],
) -> None:
    """OpenAI's ``delta.refusal`` reaches the caller as ``RefusalDelta`` and ``ChatResponse.refusal``, not as text."""
    door, upstream, _ = openai_door
    upstream.script.append(OPENAI_BODIES["refusal"])
    events: list[object] = []
    with anyio.fail_after(10):
        async for event in door.stream("help me with that"):
            events.append(event)
    refusal = "".join(e.text for e in events if isinstance(e, interlock.RefusalDelta))
    assert refusal == "I can\u2019t help with that \u2014 sorry."
    assert not [e for e in events if isinstance(e, interlock.TextDelta) and e.text]
    upstream.script.append(OPENAI_BODIES["refusal"])
    reply = await door.ask("help me with that")
    assert reply.refusal == refusal
    assert reply.content == ""
    assert reply.usage is not None
    assert reply.usage.input_tokens == 21


async def test_usage_never_sent_is_unknown_and_billed_from_an_estimate(
    openai_door: tuple[interlock.Door, ByteUpstream, Path],
) -> None:
    """No usage chunk: ``usage`` is None (not zeros), the route says the cost is an estimate, the row too."""
    door, upstream, ledger = openai_door
    upstream.script.append(OPENAI_BODIES["no_usage"])
    reply = await door.ask("say hello in French")
    assert reply.content == "Bonjour, \u00e7a va\u202f?"
    assert reply.usage is None
    assert reply.route is not None
    assert reply.route.usage_estimated
    assert reply.route.cost_cents > 0  # the delivered text cost money all the same
    estimated, output, cost = _row(ledger, "attempts", "usage_estimated, output_tokens, cost_cents")
    assert estimated == 1
    assert output > 0
    assert cost == pytest.approx(reply.route.cost_cents)


async def test_the_providers_finish_reason_and_model_id_are_kept(
    openai_door: tuple[interlock.Door, ByteUpstream, Path],
) -> None:
    """The row keeps the provider's own finish reason and the model id it says answered, beside the config's."""
    door, upstream, ledger = openai_door
    upstream.script.append(OPENAI_BODIES["no_usage"])
    reply = await door.ask("say hello in French")
    assert reply.provider_finish_reason == "stop"
    assert reply.route is not None
    assert reply.route.served_model == SERVED_ID
    assert reply.route.attempts[0].served_model == SERVED_ID
    model, served, reason = _row(ledger, "attempts", "model, served_model, provider_finish_reason")
    assert (model, served, reason) == ("m", SERVED_ID, "stop")


ANTHROPIC_BROKEN = b"".join([
    _sse({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-x-20250101",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1500, "output_tokens": 1},
    }}, "message_start"),
    _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
         "content_block_start"),
    _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Voil\u00e0 "}},
         "content_block_delta"),
    _sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"),
])


async def test_usage_reported_before_a_mid_stream_error_is_billed(tmp_path: Path) -> None:
    """Anthropic counted the prompt in ``message_start``, then sent an error event: the row bills that prompt."""
    upstream = ByteUpstream()
    upstream.script.append(ANTHROPIC_BROKEN)
    ledger = tmp_path / "ledger.sqlite"
    async with serve(upstream.handle) as url:
        config = parse_config(_config(url, "anthropic", "claude-x"))
        async with interlock.open(config, ledger_path=ledger, environ={"TEST_KEY": "sk-ant-test"}) as door:
            with pytest.raises(interlock.InterlockError) as info:
                await door.ask("explain")
    assert info.value.kind == interlock.ErrorClass.OVERLOADED
    input_tokens, cost = _row(ledger, "attempts", "input_tokens, cost_cents")
    assert input_tokens == 1500
    assert cost >= 1500 * 1.0 / 1e6 * 100 - 1e-9  # at least the prompt, at 1 USD per million input tokens
    (billed,) = _row(ledger, "requests", "cost_cents")
    assert billed == pytest.approx(cost)


ANSWER = " ".join(f"w{i}" for i in range(40))


def _resume_config(first: Upstream, second: Upstream) -> str:
    def provider(name: str, up: Upstream) -> str:
        return (
            f'[providers.{name}]\nkind = "anthropic"\nbase_url = "{up.base_url()}"\napi_key_env = "TEST_KEY"\n'
            "probe = { interval_s = 3600 }\n"
        )

    def model(name: str, provider_name: str) -> str:
        return (
            f'[models.{name}]\nprovider = "{provider_name}"\nid = "{name}-2025-01-01"\nclass = "fast"\n'
            "context_window = 100000\nmax_output_tokens = 1000\nprice = { input = 1.0, output = 2.0 }\n"
        )

    return "\n".join([
        provider("up1", first), provider("up2", second), model("first", "up1"), model("second", "up2"),
        '[jobs.default]\nchain = ["first", "second"]\ncache_ttl_s = 600\n',
    ])


async def test_a_resumed_answer_is_cached_whole_and_a_hit_says_who_made_it(tmp_path: Path) -> None:
    """The first stream breaks after five words, the second continues it; the cache keeps the whole answer,
    and its hit names the model that made it, flagged as a hit, in the route and in the ledger."""
    first = Upstream("anthropic", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("anthropic", ANSWER)
    ledger = tmp_path / "ledger.sqlite"
    async with serving(first, second):
        config = parse_config(_resume_config(first, second))
        async with interlock.open(config, ledger_path=ledger, environ={"TEST_KEY": "sk-ant-test"}) as door:
            with anyio.fail_after(10):
                served = await door.ask("count")
                hit = await door.ask("count")
    assert served.content == ANSWER
    assert served.route is not None
    assert served.route.degraded
    assert hit.content == ANSWER  # the prefix the first stream delivered is part of the cached answer
    assert hit.route is not None
    assert hit.route.cache_hit
    assert (hit.route.model, hit.route.provider, hit.route.model_class) == ("second", "up2", "fast")
    assert hit.route.cost_cents == 0.0
    assert len(second.bodies) == 1  # the hit called nobody
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT model, provider, cache_hit FROM requests ORDER BY ts, cache_hit").fetchall()
    assert rows == [("second", "up2", 0), ("second", "up2", 1)]


class CuttingUpstream:
    """Writes ``body`` one byte per write, then drops the connection: no end, no error event."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(len(self.body)):
            await response.write(self.body[i : i + 1])
        assert request.transport is not None
        request.transport.abort()
        return response


async def test_usage_reported_before_a_dropped_connection_is_billed(tmp_path: Path) -> None:
    """Anthropic counted the prompt in ``message_start``, then the connection dropped: the row keeps that count."""
    upstream = CuttingUpstream(ANTHROPIC_BROKEN[: ANTHROPIC_BROKEN.index(b"event: error")])
    ledger = tmp_path / "ledger.sqlite"
    async with serve(upstream.handle) as url:
        config = parse_config(_config(url, "anthropic", "claude-x"))
        async with interlock.open(config, ledger_path=ledger, environ={"TEST_KEY": "sk-ant-test"}) as door:
            with pytest.raises(interlock.InterlockError):
                await door.ask("explain")
    (input_tokens,) = _row(ledger, "attempts", "input_tokens")
    assert input_tokens == 1500  # the provider's own count, not an estimate of the short prompt

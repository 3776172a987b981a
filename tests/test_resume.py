"""A stream that breaks mid-answer is rescued without splicing two answers into one "success".

The upstreams are real aiohttp servers on 127.0.0.1 (``tests/upstreams.py``) speaking the OpenAI
and Anthropic wires. The first one cuts its connection after a few words; what the caller ends
up with must be exactly one answer — continued from a prefill, or restarted and reconciled — or
a typed mid-stream error carrying what it already has.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import interlock
from interlock.policies._config import parse_config
from tests.upstreams import Cut, Finish, Refuse, Upstream, serving, words

pytestmark = pytest.mark.anyio

ANSWER = " ".join(f"w{i}" for i in range(60))  # a 60-word answer
DELIVERED = "".join(words(ANSWER)[:5])  # what the caller has when the first stream breaks


def _config(first: Upstream, second: Upstream) -> str:
    def provider(name: str, up: Upstream) -> str:
        kind = "openai_compatible" if up.wire == "openai" else "anthropic"
        key = '\napi_key_env = "TEST_ANTHROPIC_KEY"' if up.wire == "anthropic" else ""
        head = f'[providers.{name}]\nkind = "{kind}"\nbase_url = "{up.base_url()}"{key}\n'
        return head + "probe = { interval_s = 3600 }\n"

    def model(name: str, provider_name: str) -> str:
        return (
            f'[models.{name}]\nprovider = "{provider_name}"\nid = "{name}-2025-01-01"\nclass = "fast"\n'
            "context_window = 100000\nmax_output_tokens = 1000\nprice = { input = 1.0, output = 2.0 }\n"
        )

    return "\n".join([
        provider("up1", first), provider("up2", second), model("first", "up1"), model("second", "up2"),
        '[jobs.default]\nchain = ["first", "second"]\n',
    ])


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


async def _door(first: Upstream, second: Upstream, ledger: Path) -> AsyncIterator[interlock.Door]:
    config = parse_config(_config(first, second))
    async with interlock.open(config, ledger_path=ledger, environ={"TEST_ANTHROPIC_KEY": "sk-ant-test"}) as door:
        yield door


async def _read(door: interlock.Door) -> tuple[str, interlock.Route | None, BaseException | None]:
    text: list[str] = []
    route: interlock.Route | None = None
    try:
        with anyio.fail_after(10):
            async for event in door.stream("count to sixty"):
                if isinstance(event, interlock.TextDelta):
                    text.append(event.text)
                elif isinstance(event, interlock.RouteEvent):
                    route = event.route
    except interlock.InterlockError as exc:
        return "".join(text), route, exc
    return "".join(text), route, None


def _rows(ledger: Path) -> tuple[list[tuple[str, int]], list[tuple[str, str, str | None]]]:
    with sqlite3.connect(ledger) as db:
        requests = db.execute("SELECT outcome, degraded FROM requests").fetchall()
        attempts = db.execute("SELECT model, outcome, error FROM attempts ORDER BY attempt").fetchall()
    return requests, attempts


async def test_a_restart_is_reconciled_into_exactly_one_answer(ledger: Path) -> None:
    """A fallback without prefill restarts the answer; the caller gets the delivered words once, then the rest."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", ANSWER)
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, route, error = await _read(door)
            await door.flush()
    assert error is None
    assert text == ANSWER
    assert len(text.split()) == 60
    assert route is not None
    assert (route.model, route.degraded, route.degraded_reason) == ("second", True, "mid_stream_resume")
    assert second.bodies[-1]["messages"][-1]["role"] == "user"  # no prefill, no "continue" instruction
    assert _rows(ledger) == ([("ok", 1)], [("first", "error", "server_error"), ("second", "ok", None)])


async def test_a_restart_that_diverges_is_a_typed_error_never_success(ledger: Path) -> None:
    """A fallback that says something else ends with a MidStreamError carrying exactly what was delivered."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", "Something else entirely, said another way.")
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, route, error = await _read(door)
            await door.flush()
    assert isinstance(error, interlock.MidStreamError)
    assert route is None
    assert text == DELIVERED
    assert error.partial == DELIVERED
    assert "diverged" in str(error)
    requests, attempts = _rows(ledger)
    assert requests == [("error", 0)]
    assert [a[:2] for a in attempts] == [("first", "error"), ("second", "error")]


async def test_a_prefill_continues_the_delivered_text(ledger: Path) -> None:
    """An Anthropic fallback gets the delivered text as the reply's start and continues it: one answer."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("anthropic", ANSWER)
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, route, error = await _read(door)
    assert error is None
    assert text == ANSWER
    assert route is not None
    assert route.degraded_reason == "mid_stream_resume"
    last = second.bodies[-1]["messages"][-1]
    assert last["role"] == "assistant"
    prefill = last["content"] if isinstance(last["content"], str) else "".join(b["text"] for b in last["content"])
    assert prefill == DELIVERED


async def test_a_refused_prefill_restarts_and_is_never_the_callers_error(ledger: Path) -> None:
    """A 400 on the prefill retries the same model without it, reconciled; the caller never sees the 400."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("anthropic", ANSWER, deque([Refuse(400, "prefill is not supported with thinking")]))
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, route, error = await _read(door)
            await door.flush()
    assert error is None
    assert text == ANSWER
    assert route is not None
    assert [(a.model, a.outcome, a.error) for a in route.attempts] == [
        ("first", "error", "server_error"), ("second", "error", "bad_request"), ("second", "ok", None)
    ]
    assert second.bodies[0]["messages"][-1]["role"] == "assistant"
    assert second.bodies[1]["messages"][-1]["role"] == "user"


async def test_a_healthy_fallback_with_a_shorter_answer_diverges(ledger: Path) -> None:
    """A restart that ends before reproducing the delivered text is a divergence, not a short success."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", ANSWER, deque([Finish(text="w0 w1")]))
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, _route, error = await _read(door)
    assert isinstance(error, interlock.MidStreamError)
    assert text == DELIVERED


async def test_a_broken_stream_is_billed_for_what_it_delivered(ledger: Path) -> None:
    """Words that reached the caller cost money though the provider never sent usage: the attempt is
    billed from the delivered text (marked estimated), not for nothing with its reservation released."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", "Something else entirely.")
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, _route, error = await _read(door)
            await door.flush()
    assert isinstance(error, interlock.MidStreamError)
    assert text == DELIVERED
    with sqlite3.connect(ledger) as db:
        first_row = db.execute(
            "SELECT output_tokens, cost_cents, usage_estimated FROM attempts WHERE model = 'first'"
        ).fetchone()
    output_tokens, cost_cents, estimated = first_row
    assert output_tokens >= len(DELIVERED.encode()) // 4  # at least a plausible count for the text
    assert cost_cents > 0
    assert estimated == 1


async def _through_gateway(door: interlock.Door) -> tuple[str, BaseException | None]:
    """Stream "count to sixty" through the real gateway with the official OpenAI SDK; the text and any error."""
    import openai

    from tests.test_gateway import serving as gateway

    text: list[str] = []
    async with gateway(door) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)
        try:
            with anyio.fail_after(10):
                stream = await client.chat.completions.create(
                    model="default", messages=[{"role": "user", "content": "count to sixty"}], stream=True
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text.append(chunk.choices[0].delta.content)
        except openai.APIError as exc:
            return "".join(text), exc
        finally:
            await client.close()
    return "".join(text), None


async def test_through_the_gateway_a_rescued_stream_is_one_answer(ledger: Path) -> None:
    """An OpenAI SDK client streaming through the gateway gets the 60 words once, not 5 plus 60."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", ANSWER)
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, error = await _through_gateway(door)
    assert error is None
    assert text == ANSWER
    assert len(text.split()) == 60


async def test_through_the_gateway_a_divergent_rescue_is_an_error_not_a_success(ledger: Path) -> None:
    """The SDK sees an error after the delivered words, never a spliced answer that ends well."""
    first = Upstream("openai", ANSWER, deque([Cut(after_words=5)]))
    second = Upstream("openai", "Something else entirely, said another way.")
    async with serving(first, second):
        async for door in _door(first, second, ledger):
            text, error = await _through_gateway(door)
    assert isinstance(error, Exception)
    assert text == DELIVERED

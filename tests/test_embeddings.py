"""Embeddings end to end: the door, routing, rails, ledger, both wires, the simulator and the gateway.

The wire tests run the door against real loopback servers that speak OpenAI's ``/v1/embeddings``
and Gemini's ``:batchEmbedContents`` JSON as documented; the gateway tests drive ``POST
/v1/embeddings`` with the official ``openai`` SDK (which asks for base64 by default and decodes it).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from otlp_receiver import OtlpReceiver, attributes

import interlock
from interlock import BudgetExceeded, ChatRequest, ConfigError, Message, PolicyRefused, ProviderError, RequestError
from interlock._clock import RealClock
from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters.providers._http import HttpAdapter
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.simulator._embeddings import FULL_DIMENSIONS, vector
from interlock.adapters.simulator._server import ServerError
from interlock.adapters.telemetry._otel import setup_from_env
from interlock.policies._config import parse_config
from interlock.policies._routing import resolve
from tests.loopback import TIMEOUTS, serve
from tests.test_gateway import serving

pytestmark = pytest.mark.anyio

OPENAI_KEY = "sk-test-embeddings-0123456789"
GEMINI_KEY = "gm-test-embeddings-0123456789"
ENVIRON = {"OPENAI_TEST_KEY": OPENAI_KEY, "GEMINI_TEST_KEY": GEMINI_KEY}


def rows(ledger: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(ledger) as conn:
        return conn.execute(sql).fetchall()


# -- the embedded fleet --------------------------------------------------------------------------


async def test_embed_on_the_embedded_fleet_is_deterministic_ordered_billed_cached_and_recorded(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    texts = ["the first text", "a second, longer text", "ünïcødé third"]
    async with interlock.open(ledger_path=ledger) as door:
        first = await door.embed(texts)
        again = await door.embed(texts)
        other_tenant = await door.embed(texts, tenant="acme")
        await door.flush()
    assert first.vectors == tuple(vector("sim-embed-1", t) for t in texts)  # in input order
    assert len(set(first.vectors)) == 3
    assert all(len(v) == FULL_DIMENSIONS for v in first.vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in first.vectors)
    assert first.route is not None
    assert first.route.model == "embed_small"
    assert first.route.task == "embed"
    assert first.route.cost_cents > 0
    assert not first.route.cache_hit
    assert first.usage is not None
    assert first.usage.input_tokens == sum(-(-len(t) // 4) for t in texts)
    assert again.vectors == first.vectors
    assert again.route is not None
    assert again.route.cache_hit
    assert again.route.cost_cents == 0.0
    assert other_tenant.route is not None
    assert not other_tenant.route.cache_hit
    requests = rows(ledger, "SELECT operation, model, cache_hit, cost_cents, outcome FROM requests ORDER BY ts")
    assert [(r[0], r[1], r[2], r[4]) for r in requests] == [
        ("embed", "embed_small", 0, "ok"), ("embed", "embed_small", 1, "ok"), ("embed", "embed_small", 0, "ok"),
    ]  # fmt: skip
    assert requests[0][3] == pytest.approx(first.route.cost_cents)
    assert requests[1][3] == 0.0
    attempts = rows(ledger, "SELECT operation, model, outcome, input_tokens FROM attempts")
    assert attempts
    assert all(a[0] == "embed" and a[2] == "ok" for a in attempts)
    assert attempts[0][3] == first.usage.input_tokens


async def test_dimensions_shorten_the_vector_as_a_prefix_renormalized(tmp_path: Path) -> None:
    async with interlock.open(ledger_path=tmp_path / "l.sqlite") as door:
        short = await door.embed("some text", dimensions=16, metadata={"cache": "off"})
        gemini = await door.embed("some text", model="embed_gemini", dimensions=16)
    full = vector("sim-embed-1", "some text")
    (v,) = short.vectors
    assert len(v) == 16
    assert math.isclose(math.fsum(x * x for x in v), 1.0)
    norm = math.sqrt(math.fsum(x * x for x in full[:16]))
    assert v == pytest.approx([x / norm for x in full[:16]])
    assert gemini.route is not None
    assert gemini.route.model == "embed_gemini"
    assert gemini.vectors == (vector("sim-embed-2", "some text", 16),)
    # Gemini reports no usage: billed on an estimate, and the route says so.
    assert gemini.usage is None
    assert gemini.route.usage_estimated
    assert gemini.route.cost_cents > 0


async def test_chat_and_embeddings_never_reach_each_others_models(tmp_path: Path) -> None:
    async with interlock.open(ledger_path=tmp_path / "l.sqlite") as door:
        with pytest.raises(PolicyRefused) as chat:
            await door.ask("hello", model="embed_small")
        with pytest.raises(PolicyRefused) as embed:
            await door.embed("hello", model="mini")
        with pytest.raises(RequestError) as empty:
            await door.embed([])
    assert chat.value.rule == "capability"
    assert "cannot chat" in chat.value.detail
    assert embed.value.rule == "capability"
    assert "not an embedding model" in embed.value.detail
    assert empty.value.field == "input"
    chat_view = ChatRequest(messages=(Message.text("user", "x"),), task="embed")
    skipped = resolve(parse_config(_fleet_config("http://127.0.0.1:9", "http://127.0.0.1:9")), chat_view, 1).skipped
    assert {s.reason for s in skipped} == {"capability"}


async def test_simulated_server_error_falls_back_along_the_chain(tmp_path: Path) -> None:
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        assert door.simulator is not None
        door.simulator.script("sim-embed-1", [ServerError(), ServerError()])  # the request and its one retry
        answer = await door.embed(["fall back, please"])
        await door.flush()
    route = answer.route
    assert route is not None
    assert route.model == "embed_gemini"
    assert route.degraded
    assert [(a.model, a.outcome) for a in route.attempts][-1] == ("embed_gemini", "ok")
    assert {a.error for a in route.attempts if a.outcome == "error"} == {"server_error"}
    assert answer.vectors == (vector("sim-embed-2", "fall back, please"),)
    recorded = rows(ledger, "SELECT operation, model, degraded, attempts FROM requests")
    assert recorded == [("embed", "embed_gemini", 1, len(route.attempts))]


async def test_budget_refuses_an_embed_before_any_call(tmp_path: Path) -> None:
    text = _fleet_config("http://127.0.0.1:9", "http://127.0.0.1:9")
    text += "\n[budgets.tenants.acme]\nusd_per_day = 0.0000001\n"
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(parse_config(text), ledger_path=ledger, environ=ENVIRON) as door:
        with pytest.raises(BudgetExceeded):
            await door.embed(["x" * 5000], tenant="acme")
        await door.flush()
    assert rows(ledger, "SELECT operation, outcome, error FROM requests") == [("embed", "error", "budget")]
    assert rows(ledger, "SELECT outcome FROM attempts") == [("skipped",), ("skipped",)]


# -- both wires, against loopback servers --------------------------------------------------------


class Upstream:
    """Loopback servers speaking OpenAI's and Gemini's embeddings JSON; each keeps the bodies it got."""

    def __init__(self, openai_status: int = 200, openai_size: int = 1536) -> None:
        self.openai_status = openai_status
        self.openai_size = openai_size  # the length it answers without ``dimensions``
        self.openai_bodies: list[Any] = []
        self.gemini_bodies: list[Any] = []
        self.gemini_paths: list[str] = []

    @staticmethod
    def values(text: str, size: int) -> list[float]:
        # Distinct per text, so that a reordered answer would be caught.
        return [float(len(text)) + i / 1000 for i in range(size)]

    async def openai(self, request: web.Request) -> web.StreamResponse:
        assert request.path == "/v1/embeddings"
        assert request.method == "POST"
        assert request.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
        body = await request.json()
        self.openai_bodies.append(body)
        if self.openai_status != 200:
            error = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
            return web.json_response(error, status=self.openai_status)
        size = body.get("dimensions") or self.openai_size
        data = [
            {"object": "embedding", "index": i, "embedding": self.values(t, size)} for i, t in enumerate(body["input"])
        ]
        data.reverse()  # OpenAI's index, not the list order, says which input a vector is for
        usage = {"prompt_tokens": 3 * len(body["input"]), "total_tokens": 3 * len(body["input"])}
        return web.json_response({"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        assert request.headers["x-goog-api-key"] == GEMINI_KEY
        self.gemini_paths.append(request.path)
        body = await request.json()
        self.gemini_bodies.append(body)
        assert len(body["requests"]) <= 100  # Gemini's batch limit
        out = []
        for entry in body["requests"]:
            assert entry["model"] == "models/text-embedding-004"
            text = entry["content"]["parts"][0]["text"]
            out.append({"values": self.values(text, entry.get("outputDimensionality", 768))})
        return web.json_response({"embeddings": out})


def _fleet_config(openai_url: str, gemini_url: str) -> str:
    return f"""
[providers.oa]
kind = "openai"
base_url = "{openai_url}/v1"
api_key_env = "OPENAI_TEST_KEY"

[providers.gm]
kind = "gemini"
base_url = "{gemini_url}"
api_key_env = "GEMINI_TEST_KEY"

[models.oa_embed]
provider = "oa"
id = "text-embedding-3-small"
allow_floating = true
class = "specialist"
kind = "embedding"
dimensions = 1536
context_window = 8191
max_output_tokens = 1
price = {{ input = 0.02, output = 0.0 }}

[models.gm_embed]
provider = "gm"
id = "text-embedding-004"
allow_floating = true
class = "specialist"
kind = "embedding"
dimensions = 768
context_window = 2048
max_output_tokens = 1
price = {{ input = 0.02, output = 0.0 }}

[models.chat]
provider = "oa"
id = "gpt-4o-mini-2024-07-18"
class = "fast"
context_window = 128000
max_output_tokens = 16384
price = {{ input = 0.15, output = 0.6 }}

[jobs.embed]
chain = ["specialist"]

[jobs.default]
chain = ["fast"]
"""


@contextlib.asynccontextmanager
async def _upstreams(up: Upstream) -> AsyncIterator[str]:
    """The two loopback servers, and a config whose providers point at them."""
    async with serve(up.openai) as oa, serve(up.gemini) as gm:
        yield _fleet_config(oa, gm)


async def test_openai_wire_batches_keeps_order_and_bills_reported_usage(tmp_path: Path) -> None:
    up = Upstream()
    texts = [f"text number {i}" + "x" * (i % 7) for i in range(300)]
    async with (
        _upstreams(up) as text,
        interlock.open(parse_config(text), ledger_path=tmp_path / "l.sqlite", environ=ENVIRON) as door,
    ):
        answer = await door.embed(texts, dimensions=4)
    assert len(up.openai_bodies) == 1  # 300 texts fit one OpenAI request (at most 2048)
    (sent,) = up.openai_bodies
    assert sent == {"model": "text-embedding-3-small", "input": texts, "encoding_format": "float", "dimensions": 4}
    assert answer.vectors == tuple(tuple(Upstream.values(t, 4)) for t in texts)
    assert answer.usage is not None
    assert answer.usage.input_tokens == 900
    assert answer.route is not None
    assert answer.route.cost_cents == pytest.approx(900 * 0.02 / 1e6 * 100)


async def test_gemini_wire_batches_by_100_and_estimates_usage(tmp_path: Path) -> None:
    up = Upstream()
    texts = [f"gemini text {i}" for i in range(250)]
    async with (
        _upstreams(up) as text,
        interlock.open(parse_config(text), ledger_path=tmp_path / "l.sqlite", environ=ENVIRON) as door,
    ):
        answer = await door.embed(texts, model="gm_embed", dimensions=3)
    assert [len(b["requests"]) for b in up.gemini_bodies] == [100, 100, 50]
    assert set(up.gemini_paths) == {"/v1beta/models/text-embedding-004:batchEmbedContents"}
    assert up.gemini_bodies[0]["requests"][0]["outputDimensionality"] == 3
    assert answer.vectors == tuple(tuple(Upstream.values(t, 3)) for t in texts)
    assert answer.usage is None
    assert answer.route is not None
    assert answer.route.usage_estimated


async def test_a_500_from_openai_falls_back_to_gemini(tmp_path: Path) -> None:
    up = Upstream(openai_status=500)
    ledger = tmp_path / "l.sqlite"
    async with (
        _upstreams(up) as text,
        interlock.open(parse_config(text), ledger_path=ledger, environ=ENVIRON) as door,
    ):
        answer = await door.embed(["one", "two"])
        await door.flush()
    assert len(up.openai_bodies) == 2  # the call and its one same-provider retry
    assert answer.route is not None
    assert answer.route.model == "gm_embed"
    assert answer.route.degraded
    assert answer.vectors == (tuple(Upstream.values("one", 768)), tuple(Upstream.values("two", 768)))
    attempts = rows(ledger, "SELECT model, outcome, error, status, operation FROM attempts ORDER BY attempt")
    assert attempts == [
        ("oa_embed", "error", "server_error", 500, "embed"),
        ("oa_embed", "error", "server_error", 500, "embed"),
        ("gm_embed", "ok", None, None, "embed"),
    ]


async def test_vectors_of_the_wrong_length_are_refused_and_fall_back(tmp_path: Path) -> None:
    up = Upstream(openai_size=1024)  # the config says 1536: a misconfigured model, or a provider bug
    async with (
        _upstreams(up) as text,
        interlock.open(parse_config(text), ledger_path=tmp_path / "l.sqlite", environ=ENVIRON) as door,
    ):
        answer = await door.embed("sized")
    assert answer.route is not None
    assert answer.route.model == "gm_embed"
    assert len(answer.vectors[0]) == 768
    (refused, *_) = answer.route.attempts
    assert (refused.model, refused.error) == ("oa_embed", "server_error")


async def test_anthropic_has_no_embeddings() -> None:
    made = HttpAdapter("claude", "http://127.0.0.1:9", AnthropicCodec("claude", None), timeouts=TIMEOUTS,
                       clock=RealClock())  # fmt: skip
    try:
        with pytest.raises(ProviderError) as info:
            await made.embed(["x"], "claude-3-5-haiku-20241022")
    finally:
        await made.aclose()
    assert info.value.kind == "bad_request"
    assert "no embeddings API" in str(info.value)
    text = _fleet_config("http://127.0.0.1:9", "http://127.0.0.1:9")
    text += '\n[providers.an]\nkind = "anthropic"\napi_key_env = "ANTHROPIC_TEST_KEY"\n'
    text = text.replace('provider = "gm"', 'provider = "an"')
    with pytest.raises(ConfigError) as config:
        parse_config(text)
    assert config.value.key == "models.gm_embed.kind"
    with pytest.raises(ConfigError) as size:
        parse_config(_fleet_config("http://x", "http://x").replace("dimensions = 768\n", ""))
    assert size.value.key == "models.gm_embed.dimensions"


# -- the gateway, with the official OpenAI SDK ---------------------------------------------------


async def test_gateway_embeddings_with_the_openai_sdk(tmp_path: Path) -> None:
    texts = ["alpha", "beta", "gamma"]
    async with (
        interlock.open(ledger_path=tmp_path / "l.sqlite") as door,
        serving(door) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="any", max_retries=0) as client,
    ):
        as_base64 = await client.embeddings.create(input=texts, model="embed")  # the SDK asks for base64
        raw = await client.embeddings.with_raw_response.create(input="alpha", model="embed", encoding_format="float")
        floats = raw.parse()
        short = await client.embeddings.create(input=texts, model="embed", dimensions=12, encoding_format="float")
        plain = await door.embed(texts, metadata={"cache": "off"})
        with pytest.raises(openai.BadRequestError) as tokens:
            await client.embeddings.create(input=[[1, 2, 3]], model="embed")
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(input="x", model="no-such-model")
    assert [d.index for d in as_base64.data] == [0, 1, 2]
    for got, want in zip(as_base64.data, plain.vectors, strict=True):
        assert got.embedding == pytest.approx(list(want), abs=1e-6)  # float32 on the wire
    assert as_base64.usage.prompt_tokens == sum(-(-len(t) // 4) for t in texts)
    assert floats.data[0].embedding == list(plain.vectors[0])  # floats travel exactly
    assert raw.headers["x-interlock-model"] == "embed_small"
    assert raw.headers["x-interlock-request-id"]
    assert all(len(d.embedding) == 12 for d in short.data)
    assert tokens.value.status_code == 400
    assert tokens.value.body["param"] == "input"


async def test_gateway_serves_embeddings_without_the_v1_prefix_and_batches_300(tmp_path: Path) -> None:
    texts = [f"item {i}" for i in range(300)]
    async with (
        interlock.open(ledger_path=tmp_path / "l.sqlite") as door,
        serving(door) as url,
        openai.AsyncOpenAI(base_url=url, api_key="any", max_retries=0) as client,  # /embeddings, no /v1
    ):
        answer = await client.embeddings.create(input=texts, model="embed_small", encoding_format="float")
    assert [d.index for d in answer.data] == list(range(300))
    assert [tuple(d.embedding) for d in answer.data] == [vector("sim-embed-1", t) for t in texts]


# -- telemetry -----------------------------------------------------------------------------------


def test_embed_records_mirror_as_genai_embeddings_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    who = {"tenant": "acme", "caller": "svc", "model_class": "specialist", "model": "embed_small"}
    attempt = AttemptRecord(request_id="e1", attempt=1, ts=1.7e9, task="embed", provider="sim_openai", **who,
                            outcome="ok", input_tokens=12, operation="embed")  # fmt: skip
    request = RequestRecord(request_id="e1", ts=1.7e9, task="embed", provider="sim_openai", **who,
                            input_tokens=12, attempts=1, operation="embed")  # fmt: skip
    with OtlpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        mirror = setup_from_env("interlock-test")
        assert mirror is not None
        try:
            mirror.record(request, [attempt])
            assert mirror.force_flush(10_000)
        finally:
            mirror.shutdown()
        assert rx.wait_for(lambda r: len(r.spans()) >= 2)
        spans = {span.name: attributes(span.attributes) for span in rx.spans()}
    assert spans["embeddings embed"]["gen_ai.operation.name"] == "embeddings"
    (client,) = [attrs for name, attrs in spans.items() if name != "embeddings embed"]
    assert client["gen_ai.operation.name"] == "embeddings"

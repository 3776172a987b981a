"""The provider simulator: a real HTTP server on loopback that speaks OpenAI, Anthropic and Gemini.

Use it to chaos-test routing configs, and in tests and benchmarks::

    from interlock.adapters.simulator._server import Simulator, SimConfig, Behaviour, RateLimit, StallFirstToken

    async with Simulator() as sim:                    # default fleet, RealClock, 127.0.0.1:<ephemeral>
        openai_base = sim.url + "/v1"                 # Anthropic's and Gemini's base URL is sim.url
        sim.script("sim-fast-1", [RateLimit(retry_after=2), StallFirstToken(5.0)])  # then normal
        sim.script("sim-fast-1", [Refusal(), NoUsage(), ErrorAfterUsage(after_tokens=2, status=529)])
        ...
        sim.stats("sim-fast-1").faults                # {"rate_limit": 1, "stall_first_token": 1}

Endpoints: ``POST /v1/chat/completions`` (OpenAI, SSE with ``data: [DONE]``, a usage chunk when
``stream_options.include_usage``), ``POST /v1/messages`` (Anthropic, named events),
``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` (Gemini; also
under ``/v1/models/``), ``GET /v1/models`` (a list both OpenAI and Anthropic clients read) and
``GET /v1beta/models``, and embeddings (``POST /v1/embeddings``, Gemini's
``:batchEmbedContents``; deterministic unit vectors, ``_embeddings``). The request's model id
picks its ``Behaviour`` (``SimConfig.models``, else ``SimConfig.default``). It behaves like a
model, so agent loops end: with ``tool_choice`` auto it calls a tool only when the last user
turn names one (never right after a tool result, which it answers with text), and always when
``tool_choice`` forces one, with arguments valid for the tool's schema (``_sample``); a
``response_format`` / ``output_config`` / ``responseSchema`` gets JSON valid for the schema.
Usage: input ~ prompt characters / 4, output = tokens sent, cached share per behaviour, each in
the format's own fields.

A request's fault is, in order: the next scripted one (``script``), an ``Outage`` covering the
model at ``clock.now() - start``, else a seeded random draw from the behaviour's ``faults``.
This module decides; ``_playback`` writes the answer as decided. Latencies are ``clock.sleep``
calls (zero latencies never touch the clock, so tests may use a ``FakeClock`` for outage windows
and stalls).

``stats(model)`` counts, per model: ``received`` requests; ``completed`` 200 responses written to
their end (stalled and malformed ones included); ``disconnected``, clients gone before the end
(a hedge loser); ``faults`` injected, by kind; ``bodies``, the last ``keep_bodies`` request bodies
as parsed JSON. ``stats()`` sums every model (without bodies). ``dead_url()`` is a loopback URL
where nothing listens. ``serve`` runs a simulator until SIGINT/SIGTERM; ``main`` is
``interlock simulate [--host H] [--port N] [--config FILE] [--seed S]``.

Seeded draws are per (seed, model, the request's ordinal for that model): a run replays exactly
when each model sees its requests in the same order.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from collections import Counter, deque
from collections.abc import Iterable
from functools import partial
from types import TracebackType
from typing import Any, Self, final

import anyio
import msgspec
from aiohttp import web

from interlock._clock import Clock, RealClock
from interlock._errors import ConfigError
from interlock.adapters.simulator._anthropic import ANTHROPIC
from interlock.adapters.simulator._batch_anthropic import add_anthropic_batch_routes
from interlock.adapters.simulator._batch_openai import add_openai_batch_routes
from interlock.adapters.simulator._batch_store import BatchStore
from interlock.adapters.simulator._behaviour import (
    ACCEPT_WORD,
    REJECT_WORD,
    Behaviour,
    Chance,
    Dist,
    Drop,
    ErrorAfterUsage,
    Fault,
    Fixed,
    LogNormal,
    Malformed,
    Normal,
    NoUsage,
    Outage,
    Overloaded,
    RateLimit,
    Refusal,
    Reset,
    ServerError,
    SimConfig,
    StallFirstToken,
    StallHeaders,
    Unavailable,
    Uniform,
    default_config,
    draw_plan,
    fault_kind,
    load_config,
    request_rng,
)
from interlock.adapters.simulator._embeddings import add_embedding_routes
from interlock.adapters.simulator._gemini import GEMINI
from interlock.adapters.simulator._gemini import model_list as gemini_models
from interlock.adapters.simulator._openai import OPENAI
from interlock.adapters.simulator._playback import JSON, ClientGone, Playback, abort, error_response
from interlock.adapters.simulator._wire import WireFormat, build_reply, model_list

__all__ = [
    "Simulator", "ModelStats", "dead_url", "serve", "main",
    "SimConfig", "Behaviour", "Chance", "Outage", "default_config", "load_config",
    "Dist", "Fixed", "Uniform", "LogNormal",
    "Fault", "Normal", "RateLimit", "ServerError", "Unavailable", "Overloaded", "Reset",
    "StallHeaders", "StallFirstToken", "Drop", "Malformed", "Refusal", "NoUsage", "ErrorAfterUsage",
]


class ModelStats(msgspec.Struct, frozen=True):
    """What the simulator saw for one model (or, summed, for all)."""

    received: int = 0
    completed: int = 0
    disconnected: int = 0
    faults: dict[str, int] = msgspec.field(default_factory=dict)
    bodies: tuple[Any, ...] = ()


class _ModelState:
    __slots__ = ("bodies", "completed", "disconnected", "faults", "received", "script")

    def __init__(self, keep: int) -> None:
        self.received = self.completed = self.disconnected = 0
        self.faults: Counter[str] = Counter()
        self.bodies: deque[bytes] = deque(maxlen=keep)
        self.script: deque[Fault] = deque()


@final
class Simulator:
    """A scriptable multi-provider LLM server on loopback; an async context manager."""

    def __init__(
        self, config: SimConfig | None = None, *, clock: Clock | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config if config is not None else default_config()
        self._clock: Clock = clock if clock is not None else RealClock()
        self._playback = Playback(self._clock)
        self._host, self._port = host, port
        self._states: dict[str, _ModelState] = {}
        self._runner: web.AppRunner | None = None
        self._t0 = 0.0
        self._seq = 0
        self._closing = False
        self._inflight: set[anyio.CancelScope] = set()

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        add_embedding_routes(app, lambda model: self._forced(self._state(model), model))  # before Gemini's catch-all
        self.batches = BatchStore(self._config, self._clock, lambda model: self._forced(self._state(model), model))
        add_openai_batch_routes(app, self.batches)  # the batch APIs: _batch_openai, _batch_anthropic
        add_anthropic_batch_routes(app, self.batches)
        app.router.add_post("/v1beta/models/{target}", self._gemini)
        app.router.add_post("/v1/models/{target}", self._gemini)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1beta/models", self._list_gemini_models)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, int(runner.addresses[0][1])
        self._t0 = self._clock.now()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        for scope in self._inflight:
            scope.cancel()
        if self._runner is not None:
            with anyio.CancelScope(shield=True):
                await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """``http://host:port``; OpenAI's base URL is this plus ``/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def config(self) -> SimConfig:
        """The fleet this simulator serves."""
        return self._config

    def script(self, model: str, faults: Iterable[Fault]) -> None:
        """Queue forced outcomes for ``model``'s next requests, in order (``Normal()`` for a plain answer)."""
        self._state(model).script.extend(faults)

    def stats(self, model: str | None = None) -> ModelStats:
        """Counters and recent bodies of ``model``; with no model, counters summed over all."""
        if model is not None:
            s = self._states.get(model) or _ModelState(0)
            bodies = tuple(msgspec.json.decode(b) for b in s.bodies)
            return ModelStats(s.received, s.completed, s.disconnected, dict(s.faults), bodies)
        faults: Counter[str] = Counter()
        for s in self._states.values():
            faults.update(s.faults)
        states = self._states.values()
        return ModelStats(sum(s.received for s in states), sum(s.completed for s in states),
                          sum(s.disconnected for s in states), dict(faults))

    def _state(self, model: str) -> _ModelState:
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = _ModelState(self._config.keep_bodies)
        return state

    # --- routes -------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, OPENAI)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, ANTHROPIC)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return error_response(GEMINI, 404, f"unknown method {method!r}")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return error_response(GEMINI, 400, "the simulator streams only with alt=sse")
        return await self._handle(request, GEMINI, model.removeprefix("models/"), stream)

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=model_list(sorted(self._config.models)), content_type=JSON)

    async def _list_gemini_models(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=gemini_models(sorted(self._config.models)), content_type=JSON)

    # --- one request --------------------------------------------------------------------

    async def _handle(
        self, request: web.Request, wire: WireFormat, model: str = "", stream: bool = False
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            ask = wire.decode(raw, model, stream)
        except msgspec.DecodeError as exc:
            return error_response(wire, 400, f"invalid request body: {exc}")
        state = self._state(ask.model)
        ordinal, state.received = state.received, state.received + 1
        state.bodies.append(raw)
        behaviour = self._config.behaviour(ask.model)
        rng = request_rng(self._config.seed, ask.model, ordinal)
        plan = draw_plan(behaviour, rng, self._forced(state, ask.model))
        if b"ACCEPT" in raw and b"REJECT" in raw and plan.words:
            # A review request: answer with a verdict word first, accepting with the behaviour's odds.
            verdict = ACCEPT_WORD if plan.tool_roll < behaviour.review_accept_p else REJECT_WORD
            plan = msgspec.structs.replace(plan, words=(verdict, *plan.words[1:]))
        if not isinstance(plan.fault, Normal):
            state.faults[fault_kind(plan.fault)] += 1
        self._seq += 1
        reply = build_reply(wire.name, ask, plan, behaviour, self._seq, int(self._clock.wall()))
        with anyio.CancelScope() as scope:  # cancelled by __aexit__, so shutdown never waits on a stall
            self._inflight.add(scope)
            try:
                resp, completed = await self._playback.answer(request, wire, ask, plan, reply)
                if completed:
                    state.completed += 1
                return resp
            except ClientGone as gone:
                state.disconnected += 1
                return gone.response
            except anyio.get_cancelled_exc_class():
                if not self._closing:  # aiohttp cancels the handler when its client disconnects
                    state.disconnected += 1
                raise
            finally:
                self._inflight.discard(scope)
        abort(request, reset=False)
        return web.Response()

    def _forced(self, state: _ModelState, model: str) -> Fault | None:
        if state.script:
            return state.script.popleft()
        elapsed = self._clock.now() - self._t0
        return next((o.fault for o in self._config.outages if o.covers(model, elapsed)), None)


def dead_url(host: str = "127.0.0.1") -> str:
    """A loopback URL where nothing listens: a port just bound and released (for connect-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}"


async def serve(config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run a simulator until SIGINT or SIGTERM, printing its URL first (main thread only)."""
    config = config if config is not None else default_config()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Simulator(config, host=host, port=port) as sim:
            print(f"interlock simulator listening on {sim.url}", flush=True)
            print(f"OpenAI base URL {sim.url}/v1; Anthropic and Gemini base URL {sim.url}", flush=True)
            print(f"models: {', '.join(sorted(config.models)) or '(default behaviour only)'}", flush=True)
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    """``interlock simulate``: serve until SIGINT/SIGTERM; prints the URL first."""
    parser = argparse.ArgumentParser(prog="interlock simulate", description="Run the provider simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: an ephemeral port)")
    parser.add_argument("--config", help="a SimConfig as .toml or .json (default: the built-in fleet)")
    parser.add_argument("--seed", type=int, help="override the config's random seed")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else default_config()
    except (ConfigError, OSError) as exc:
        print(f"interlock simulate: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        config = msgspec.structs.replace(config, seed=args.seed)
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        anyio.run(partial(serve, config, host=args.host, port=args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

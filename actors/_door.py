"""The one door: ``interlock.open()`` builds the tree; ``door.ask`` / ``door.stream`` call through it.

::

    async with interlock.open("interlock.toml") as door:   # or interlock.open() for the embedded default
        reply = await door.ask("summarize this", task="cheap_bulk", tenant="acme")
        async for event in door.stream(messages, model="planner"):   # pinned, still governed
            ...

This module is the face only: what callers hold and call. What the door stands on (the runtime,
the actors, the stores, the rails) is built by ``interlock.actors._tree``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack, final

import anyio
import msgspec

from interlock._clock import Clock
from interlock._embeddings import EmbedRequest, EmbedResponse
from interlock._errors import InterlockError, RequestError
from interlock._types import (
    ChatRequest,
    ChatResponse,
    Message,
    RequestOptions,
    RouteEvent,
    Sensitivity,
    StreamEvent,
    ToolSpec,
)
from interlock.actors._batch import BatchPolling, BatchRun
from interlock.actors._batch_budget import BatchBudgets
from interlock.actors._explain import explain
from interlock.actors._ledger_actor import Flush, LedgerStatistics
from interlock.actors._provider_actor import GetHealth, ProviderHealth
from interlock.actors._router_actor import new_request_id
from interlock.actors._tree import Opened, TreeParts, tree_options
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.request._assemble import collect
from interlock.actors.request._embed import embed
from interlock.actors.request._serving import serve
from interlock.adapters.simulator._server import Simulator
from interlock.policies._config import Config
from interlock.policies._eval import EvalOptions, EvalPrompt, EvalReport
from interlock.policies._explain import Explanation
from interlock.policies._verify import Verifier

Prompt = str | Message | Sequence[Message]
_OPTION_NAMES = frozenset(ChatRequest.__struct_fields__) - {"messages"}


@final
class Door:
    """The handle callers use; made by ``interlock.open``, valid inside its ``async with``."""

    def __init__(self, parts: TreeParts) -> None:
        self._context = parts.context
        self._config = parts.context.config
        self._providers = parts.providers
        self._ledger = parts.ledger
        self._buffer = parts.buffer
        self._sim = parts.simulator
        self._clock: Clock = parts.context.clock
        self._state = parts.state
        self._environ = parts.environ

    @property
    def simulator(self) -> Simulator | None:
        """The loopback simulator behind simulator providers (script faults on it), if any."""
        return self._sim

    @property
    def config(self) -> Config:
        """The decoded configuration in force."""
        return self._config

    async def ask(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> ChatResponse:
        """Send one request and return the whole answer with its ``route``.

        Options are ``ChatRequest`` fields (``RequestOptions``): ``task``, ``model``,
        ``model_class``, ``tenant``, ``caller``, ``sensitivity``, ``max_tokens``, ``tools``, ...;
        an unknown one is a ``RequestError`` naming it.
        """
        return await collect(self.stream(prompt, **options))

    async def map(
        self,
        inputs: Sequence[Prompt],
        *,
        concurrency: int = 16,
        progress: Callable[[int, int], None] | None = None,
        **options: Unpack[RequestOptions],
    ) -> list[ChatResponse | InterlockError]:
        """Run one request per input under the job's rails, at most ``concurrency`` at once.

        Results come back in input order: each a ``ChatResponse``, or the ``InterlockError`` that
        item ended with — one failure never loses the others. ``progress(done, total)`` is called
        after each item. Re-running a map is resumable through the response cache: items already
        answered (on a job with ``cache_ttl_s``) replay at no cost.
        """
        if concurrency < 1:
            raise RequestError("concurrency", "must be at least 1")
        results: list[ChatResponse | InterlockError | None] = [None] * len(inputs)
        limiter = anyio.CapacityLimiter(concurrency)
        done = 0

        async def one(index: int, prompt: Prompt) -> None:
            nonlocal done
            async with limiter:
                try:
                    results[index] = await self.ask(prompt, **options)
                except InterlockError as exc:
                    results[index] = exc
            done += 1
            if progress is not None:
                progress(done, len(inputs))

        async with anyio.create_task_group() as tg:
            for index, prompt in enumerate(inputs):
                tg.start_soon(one, index, prompt)
        return [r for r in results if r is not None]

    def stream(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> AsyncGenerator[StreamEvent | RouteEvent]:
        """Yield the answer's events as they arrive, then one ``RouteEvent``."""
        fields: dict[str, Any] = dict(options)
        if "request_id" not in fields:  # the id is made here, not by a copy of the request later
            fields["request_id"] = new_request_id(self._context.clock.wall())
        return self.send(build_request(prompt, fields))

    def send(
        self, request: ChatRequest, *, on_plan: Callable[[str], None] | None = None
    ) -> AsyncGenerator[StreamEvent | RouteEvent]:
        """Like ``stream``, for a ready-made ``ChatRequest``; leaving early cancels the upstream call.

        The request runs in the task that iterates the stream: close it (``aclose``, or leave an
        ``async for`` by ``break`` inside ``contextlib.aclosing``) to cancel it at once.
        ``on_plan`` is called with the job's first choice (a model name) once the request is
        planned, before its first event: what a stream can say before its route is known.
        """
        return serve(self._context, request, on_plan)

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        task: str | None = None,
        model: str | None = None,
        model_class: str | None = None,
        tenant: str = "default",
        caller: str = "default",
        sensitivity: Sensitivity = "internal",
        dimensions: int | None = None,
        metadata: dict[str, str] | None = None,
        request_id: str = "",
    ) -> EmbedResponse:
        """Embed one text or many: one vector per text, in input order, with its ``route``.

        Routed like ``ask`` (``task``, ``model`` or ``model_class``; with none of them, the job
        named ``embed`` if the config has one, else ``default``) but only to models marked
        ``kind = "embedding"``; governed by the same rails: response cache, budgets, breakers,
        fallback; one ledger row with ``operation = "embed"``. ``dimensions`` asks for shorter
        vectors where the model can give them.
        """
        texts = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        return await self.send_embed(
            embed_request(
                texts, task=task, model=model, model_class=model_class, tenant=tenant, caller=caller,
                sensitivity=sensitivity, dimensions=dimensions, metadata=metadata, request_id=request_id,
                default_job="embed" if "embed" in self._config.jobs else None,
            )
        )  # fmt: skip

    async def send_embed(self, request: EmbedRequest) -> EmbedResponse:
        """Like ``embed``, for a ready-made ``EmbedRequest`` (the gateway's)."""
        return await embed(self._context, request)

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_s`` seconds in the door's state store.

        The state store is the one the rails share (a SQLite file every process of a host opens),
        so what one process keeps another can ``recall``: the gateway keeps stored Responses-API
        answers here. Keys are namespaced apart from the response cache's.
        """
        await self._state.cache.put(_KEPT + key, value, self._context.clock.wall() + ttl_s)

    async def recall(self, key: str) -> bytes | None:
        """What ``remember`` kept under ``key``, or None when it is absent or expired."""
        return await self._state.cache.get(_KEPT + key, self._context.clock.wall())

    async def explain(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> Explanation:
        """The route ``prompt`` would take, and why each model is in or out, without calling any model.

        Takes ``ask``'s options. The plan is the router's own (rules, PII scan, hedge delay); each
        candidate is then judged by its provider's breaker and health and by the budgets left
        (``interlock.actors._explain``). Nothing is sent to a provider and nothing is recorded.
        """
        return await explain(self._context, self._providers, self._state, build_request(prompt, dict(options)))

    def batch(
        self, inputs: Sequence[Prompt] = (), *, batch_id: str = "", poll: BatchPolling | None = None,
        **options: Unpack[RequestOptions],
    ) -> BatchRun:  # fmt: skip
        """Send ``inputs`` through the provider's batch API, billed at the model's ``batch_price``.

        ``await`` it for ``map``'s shape: per input, in order, a ``ChatResponse`` or its
        ``InterlockError``. It submits (or, after a restart, picks up from the state store the batch
        sent for the same inputs), polls with back-off on the door's clock, collects into ledger
        rows; ``batch_id`` picks up a known batch. Steps: ``submit``, ``status``, ``wait``, ``collect``, ``cancel``.
        """
        sim = self._sim.url if self._sim is not None else None
        state = self._state.cache
        budgets = None
        if BudgetRail.wanted(self._context.config):
            budgets = BatchBudgets(self._state.budgets, self._context.config, self._context.clock)
        return BatchRun(
            self._context, state, inputs, options, build_request, sim, batch_id=batch_id, polling=poll,
            environ=self._environ, budgets=budgets,
        )

    async def evaluate(
        self, prompts: Sequence[EvalPrompt | str], *, candidates: Sequence[str], task: str | None = None,
        verify: Sequence[Verifier] | None = None, repeat: int = 1, concurrency: int = 8, **options: Unpack[EvalOptions],
    ) -> EvalReport:  # fmt: skip
        """Every prompt on every candidate through the rails, judged and compared (``interlock eval``).

        Returns each candidate's accept rate (Wilson 95% interval), cost, latencies and failures, and
        the recommended model with the TOML change that moves ``task`` to it; see ``interlock.actors._evaluate``.
        """
        from interlock.actors._evaluate import evaluate

        return await evaluate(self, prompts, candidates=candidates, task=task, verify=verify, repeat=repeat,
                              concurrency=concurrency, **options)  # fmt: skip

    async def health(self) -> dict[str, ProviderHealth]:
        """Each enabled provider's breaker state, cooldown, health, free slots and recent breaker transitions.

        It keeps answering across crashes of the provider actors and restarts of their supervisor
        (their refs stay valid); while a provider's actor is being restarted it raises ``ActorStopped``.
        """
        return {name: await ref.ask(GetHealth(), timeout=5.0) for name, ref in self._providers.items()}

    async def flush(self) -> int:
        """Write every pending ledger record now; returns how many were written."""
        written: int = await self._ledger.ask(Flush(), timeout=60.0)
        return written

    def ledger_statistics(self) -> LedgerStatistics:
        """Records accepted, written and pending."""
        return self._buffer.statistics()


_KEPT = "kept:"  # ``remember``'s keys, apart from the response cache's (which are hashes)


def build_request(prompt: Prompt, options: Mapping[str, Any]) -> ChatRequest:
    """A ``ChatRequest`` from a prompt and keyword options; a bad option names its field."""
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message.text("user", prompt),)
    elif isinstance(prompt, Message):
        messages = (prompt,)
    else:
        messages = tuple(prompt)
    if not messages:
        raise RequestError("messages", "at least one message is required")
    unknown = options.keys() - _OPTION_NAMES
    if unknown:
        name = min(unknown)
        raise RequestError(name, f"unknown request option; expected one of {', '.join(sorted(_OPTION_NAMES))}")
    fields = dict(options)
    if "tools" in fields:
        fields["tools"] = tuple(t if isinstance(t, ToolSpec) else msgspec.convert(t, ToolSpec) for t in fields["tools"])
    return ChatRequest(messages=messages, **fields)


def embed_request(
    texts: tuple[str, ...], *, default_job: str | None = None, metadata: dict[str, str] | None = None, **fields: Any
) -> EmbedRequest:
    """An ``EmbedRequest``, checked: at least one text, each a string; ``dimensions`` at least 1.

    With no task, model or class, ``default_job`` (the config's ``embed`` job) serves it.
    """
    if not texts:
        raise RequestError("input", "at least one text is required")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise RequestError(f"input[{bad}]", "expected a string")
    dimensions = fields.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise RequestError("dimensions", "must be a positive integer")
    if fields.get("task") is None and fields.get("model") is None and fields.get("model_class") is None:
        fields["task"] = default_job
    return EmbedRequest(inputs=texts, metadata=dict(metadata or {}), **fields)


@final
class OpenDoor:
    """What ``interlock.open`` returns: ``async with`` it to get the ``Door``; leaving closes everything."""

    def __init__(self, opened: Opened[Door]) -> None:
        self._opened = opened

    async def __aenter__(self) -> Door:
        return await self._opened.enter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._opened.exit(exc_type, exc, tb)


def open(  # the door's name is part of the public contract: interlock.open()
    config: Config | str | Path | None = None,
    *,
    clock: Clock | None = None,
    ledger_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    verifiers: Mapping[str, Sequence[Verifier]] | None = None,
    gc_tuning: bool = True,
) -> OpenDoor:
    """Open the door: ``async with interlock.open(path) as door``; no path = the embedded default.

    ``verifiers`` adds Python-side verifiers per job (e.g. ``msgspec_verifier(MyType)`` or a
    ``CallableVerifier``) to the ones its config declares. ``gc_tuning`` (on by default) tunes
    Python's garbage collector while a door is open, and restores it when the last door closes
    (see ``interlock.actors._tree.GcTuning``). Pass False to leave the collector alone.
    """
    options = tree_options(config, clock, ledger_path, environ, verifiers, gc_tuning)
    return OpenDoor(Opened(options, Door))

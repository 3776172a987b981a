"""Provider batches through the door: submit, poll with back-off, collect into ledger rows.

``door.batch(inputs, task=...)`` returns a ``BatchRun``; awaiting it submits the inputs as one
batch of one model (OpenAI's Batch API or Anthropic's Message Batches: the providers' half-price
lane for work nobody waits on), polls it on the door's clock with back-off
(``policies._batch_poll``), and collects: per input, in order, a ``ChatResponse`` or the
``InterlockError`` it ended with, as ``door.map`` gives them. Its steps are methods too
(``submit``, ``status``, ``wait``, ``collect``, ``cancel``): ``interlock batch`` runs them one
command at a time.

Each item is planned by the router as an interactive request would be (rules, tenant
allow-lists, pins, context windows); the batch goes to the first candidate of the first item's
plan whose provider has a batch API and is enabled, and an item whose plan does not hold that
model is refused with a ``RequestError`` naming it (a batch has one model). Budgets apply as
to interactive calls: each item reserves its worst case at the batch rate before the batch is
sent (one with no room is refused, ``BudgetExceeded``) and settles its real cost when the batch is
collected (``_batch_budget``). The response cache and verifiers do not: the provider answers
hours later, off the rails.

Resumability: the submitted batch's ``BatchHandle`` goes to the state store (the rails' shared
cache, kept 30 days) under ``batch:<id>``, and under ``batch-for:<hash of the inputs and
options>`` its id, until it is collected. A process that restarts and runs the same
``door.batch(...)`` picks the batch up instead of submitting it again; ``door.batch(batch_id=...)``
picks up a known one. The item rows' keys are fixed at submission, so a collection that a
crash cut short is simply run again (``_batch_records``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, final

import msgspec

from interlock._errors import ConfigError, ErrorClass, InterlockError, ProviderError, RequestError
from interlock._records import AttemptRecord, LedgerRecord
from interlock._types import ChatRequest, ChatResponse, Usage
from interlock.actors._batch_budget import BatchBudgets
from interlock.actors._batch_clients import batch_wire, make_client
from interlock.actors._batch_records import (
    BatchHandle,
    BatchItem,
    RefusedItem,
    item_outcome,
    refusal_of,
    refused_error,
    refused_rows,
)
from interlock.actors._ledger_actor import tell_records, wait_committed
from interlock.actors._router_actor import Plan, RouteRequest, new_request_id
from interlock.actors.request._serving import ServingContext
from interlock.adapters.providers._batch import BatchClient, BatchCounts, BatchStatus
from interlock.adapters.stores._state_store import CacheStore
from interlock.policies._batch_poll import BatchPolling, poll_delay
from interlock.policies._failover import first_choice, refusal
from interlock.policies._pricing import Price, batch_rate
from interlock.policies._routing import Candidate

__all__ = ["BatchNotEnded", "BatchPolling", "BatchProgress", "BatchRun", "batch_wire"]

KEPT_S = 30 * 24 * 3600.0  # results stay at the providers for weeks; so does the handle
HANDLE_KEY, PENDING_KEY = "batch:", "batch-for:"
_TRANSIENT = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.OVERLOADED, ErrorClass.SERVER_ERROR,
                        ErrorClass.TIMEOUT, ErrorClass.CONNECT})  # fmt: skip
_HANDLE = msgspec.json.Decoder(BatchHandle)
Build = Callable[[Any, Mapping[str, Any]], ChatRequest]


class BatchNotEnded(InterlockError):
    """``collect(wait=False)`` on a batch still running; ``status`` is its provider's word."""

    def __init__(self, batch_id: str, status: str) -> None:
        super().__init__(f"batch {batch_id} has not ended yet (status {status})", kind=ErrorClass.TIMEOUT)
        self.batch_id = batch_id
        self.status = status


class BatchProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A batch's progress as the caller sees it: the provider's counts, plus the items refused before sending."""

    batch_id: str
    provider: str
    model: str
    phase: str
    status: str
    counts: BatchCounts
    refused: int
    total: int


@final
class BatchRun:
    """One batch, submitted or picked up: ``await`` it for the results, or drive its steps one by one."""

    def __init__(
        self, ctx: ServingContext, cache: CacheStore, inputs: Sequence[Any], options: Mapping[str, Any],
        build: Build, sim_url: str | None, *, batch_id: str = "", polling: BatchPolling | None = None,
        environ: Mapping[str, str] | None = None, budgets: BatchBudgets | None = None,
    ) -> None:  # fmt: skip
        self._ctx, self._cache, self._build, self._sim_url = ctx, cache, build, sim_url
        self._budgets = budgets  # None when the config has no budget to keep
        self._inputs, self._options, self._batch_id = tuple(inputs), dict(options), batch_id
        self._polling = polling or BatchPolling()
        self._environ = os.environ if environ is None else environ
        self._handle: BatchHandle | None = None

    def __await__(self) -> Generator[Any, None, list[ChatResponse | InterlockError]]:
        return self.run().__await__()

    @property
    def handle(self) -> BatchHandle | None:
        """What the state store keeps of this batch, once it is submitted or picked up."""
        return self._handle

    async def run(self) -> list[ChatResponse | InterlockError]:
        """Submit (or pick up), wait until the batch ends, collect."""
        await self.submit()
        return await self.collect(wait=True)

    async def submit(self) -> str:
        """Send the inputs as one batch, or pick up the one already sent for them; returns its id.

        The id is "" when no item could be sent (each was refused: their rows are written).
        """
        if self._handle is not None:
            return self._handle.batch_id
        if self._batch_id:
            self._handle = await self._load(self._batch_id)
            return self._batch_id
        requests, refused = self._requests()
        key = _content_key(requests, refused, self._options)
        pending = await self._cache.get(PENDING_KEY + key, self._ctx.clock.wall())
        if pending:
            found = await self._find(pending.decode())
            if found is not None and not found.collected:
                self._handle = found
                return found.batch_id
        handle = await self._send(requests, refused, key)
        self._handle = handle
        if handle.batch_id:
            await self._keep(handle)
            await self._cache.put(PENDING_KEY + key, handle.batch_id.encode(), self._ctx.clock.wall() + KEPT_S)
        await self._write(tuple(row for item in handle.refused for row in refused_rows(handle, item)))
        return handle.batch_id

    async def status(self) -> BatchProgress:
        """The batch's progress now, as its provider reports it."""
        handle = await self._require()
        if not handle.batch_id:
            return _progress(handle, None)
        async with self._client(handle) as client:
            return _progress(handle, await client.status(handle.batch_id))

    async def wait(self) -> BatchProgress:
        """Poll until the batch ends (back-off on the door's clock); ``timeout`` after ``polling.timeout_s``."""
        handle = await self._require()
        if not handle.batch_id:
            return _progress(handle, None)
        async with self._client(handle) as client:
            return _progress(handle, await self._poll(client, handle))

    async def cancel(self) -> BatchProgress:
        """Ask the provider to stop the batch; collect it afterwards for its items' rows."""
        handle = await self._require()
        if not handle.batch_id:
            return _progress(handle, None)
        async with self._client(handle) as client:
            return _progress(handle, await client.cancel(handle.batch_id))

    async def collect(self, *, wait: bool = True) -> list[ChatResponse | InterlockError]:
        """Each input's result, in order, and (the first time) every item's rows, committed.

        Without ``wait`` a batch still running is a ``BatchNotEnded``.
        """
        handle = await self._require()
        results: dict[int, tuple[ChatResponse | InterlockError, tuple[LedgerRecord, ...]]] = {}
        if handle.batch_id:
            async with self._client(handle) as client:
                status = await (self._poll(client, handle) if wait else client.status(handle.batch_id))
                if not status.ended:
                    raise BatchNotEnded(handle.batch_id, status.status)
                got = await client.results(handle.batch_id, handle.model_id, [i.request_id for i in handle.items])
            price, now = self._price(handle), self._ctx.clock.wall()
            for item in handle.items:
                result = got[item.request_id]
                results[item.index] = item_outcome(handle, item, result.events, result.error, price, now)
        for refused in handle.refused:
            results[refused.index] = (refused_error(refused), refused_rows(handle, refused))
        if not handle.collected:
            if self._budgets is not None:  # each item's reservations become what it cost, at the batch rate
                price = self._price(handle)
                for item in handle.items:
                    await self._budgets.settle(item.request_id, _usage_of(results[item.index][1]), price)
            await self._write(tuple(row for index in sorted(results) for row in results[index][1]))
            self._handle = handle = msgspec.structs.replace(handle, collected=True)
            if handle.batch_id:
                await self._keep(handle)
                await self._cache.put(PENDING_KEY + handle.content_key, b"", self._ctx.clock.wall())
        return [results[index][0] for index in sorted(results)]

    # -- submission ----------------------------------------------------------------------------

    def _requests(self) -> tuple[list[tuple[int, ChatRequest]], list[RefusedItem]]:
        wall = self._ctx.clock.wall()
        built: list[tuple[int, ChatRequest]] = []
        refused: list[RefusedItem] = []
        for index, prompt in enumerate(self._inputs):
            request_id = new_request_id(wall)
            try:
                built.append((index, self._build(prompt, {**self._options, "request_id": request_id})))
            except RequestError as exc:
                refused.append(refusal_of(index, request_id, exc))
        return built, refused

    async def _send(self, requests: list[tuple[int, ChatRequest]], refused: list[RefusedItem], key: str) -> BatchHandle:
        plans: list[tuple[int, ChatRequest, Plan]] = []
        for index, request in requests:
            try:
                plans.append((index, request, await self._ctx.router.ask(RouteRequest(request), timeout=None)))
            except RequestError as exc:
                refused.append(refusal_of(index, request.request_id, exc))
        chosen = next((c for _, _, plan in plans if (c := self._batchable(plan)) is not None), None)
        items: list[tuple[BatchItem, ChatRequest]] = []
        for index, request, plan in plans:
            problem = self._problem(plan, chosen)
            if problem is None and chosen is not None and self._budgets is not None:
                rate = batch_rate(chosen.model.price, chosen.model.batch_price)
                try:  # a batch fits its budgets as interactive calls do: each item's worst case, held
                    await self._budgets.reserve(request, chosen, rate)
                except InterlockError as exc:
                    problem = exc
            if problem is not None:
                refused.append(refusal_of(index, request.request_id, problem))
                continue
            item = BatchItem(index, request.request_id, plan.tokens, first_choice(plan.resolution) or "")
            items.append((item, request))
        first = requests[0][1] if requests else None
        handle = _handle_for(chosen, first, plans, len(self._inputs), key, self._ctx.clock.wall())
        if chosen is None or not items:
            return msgspec.structs.replace(handle, refused=tuple(refused))
        try:
            async with self._client(handle) as client:
                sent = await client.submit([(i.request_id, r) for i, r in items], chosen.model.id)
        except BaseException:
            await self._release(i.request_id for i, _ in items)  # nothing was sent: nothing is owed
            raise
        await self._release(i.request_id for i, _ in items if i.request_id in sent.refused)
        for item, _ in items:
            if item.request_id in sent.refused:
                refused.append(refusal_of(item.index, item.request_id, sent.refused[item.request_id], attempted=True))
        kept = tuple(i for i, _ in items if i.request_id not in sent.refused)
        return msgspec.structs.replace(handle, batch_id=sent.batch_id, items=kept, refused=tuple(refused))

    async def _release(self, request_ids: Iterable[str]) -> None:
        if self._budgets is not None:
            for request_id in request_ids:
                await self._budgets.release(request_id)

    def _batchable(self, plan: Plan) -> Candidate | None:
        """The first candidate of ``plan`` whose provider has a batch API and is enabled."""
        providers = self._ctx.config.providers
        for candidate in plan.resolution.candidates:
            cfg = providers.get(candidate.provider)
            if cfg is not None and batch_wire(cfg) and self._ctx.providers(candidate.provider) is not None:
                return candidate
        return None

    def _problem(self, plan: Plan, chosen: Candidate | None) -> InterlockError | None:
        """Why an item cannot go in the batch of ``chosen``; None when it can."""
        resolution = plan.resolution
        job = resolution.job or "(pinned)"
        if not resolution.candidates:
            return refusal(job, resolution.skipped)
        if chosen is None:
            names = ", ".join(c.name for c in resolution.candidates)
            return RequestError("task", f"no candidate of job {job} has an enabled batch API ({names})")
        if all(c.name != chosen.name for c in resolution.candidates):
            mine = resolution.candidates[0].name
            return RequestError("model", f"this item routes to {mine}; the batch goes to {chosen.name} (one model)")
        return None

    # -- collection ----------------------------------------------------------------------------

    async def _poll(self, client: BatchClient, handle: BatchHandle) -> BatchStatus:
        clock, polling = self._ctx.clock, self._polling
        deadline = clock.now() + polling.timeout_s
        polls = 0
        while True:
            try:
                status = await client.status(handle.batch_id)
                if status.ended:
                    return status
            except ProviderError as exc:
                if exc.kind not in _TRANSIENT:
                    raise
            left = deadline - clock.now()
            if left <= 0:
                detail = f"batch {handle.batch_id} did not end within {polling.timeout_s:g} s"
                raise ProviderError(ErrorClass.TIMEOUT, handle.provider, model=handle.model_id, detail=detail)
            await clock.sleep(min(poll_delay(polls, polling), left))
            polls += 1

    def _price(self, handle: BatchHandle) -> Price | None:
        model = self._ctx.config.models.get(handle.model)
        return handle.price if model is None else batch_rate(model.price, model.batch_price)

    # -- the state store and the ledger ----------------------------------------------------------

    async def _require(self) -> BatchHandle:
        if self._handle is None:
            await self.submit()
        assert self._handle is not None
        return self._handle

    async def _find(self, batch_id: str) -> BatchHandle | None:
        raw = await self._cache.get(HANDLE_KEY + batch_id, self._ctx.clock.wall())
        return _HANDLE.decode(raw) if raw else None

    async def _load(self, batch_id: str) -> BatchHandle:
        handle = await self._find(batch_id)
        if handle is None:
            raise RequestError("batch_id", f"no batch {batch_id} in the state store (submitted with another ledger?)")
        return handle

    async def _keep(self, handle: BatchHandle) -> None:
        await self._cache.put(HANDLE_KEY + handle.batch_id, msgspec.json.encode(handle), handle.ts + KEPT_S)

    async def _write(self, rows: tuple[LedgerRecord, ...]) -> None:
        if rows:
            await wait_committed(await tell_records(self._ctx.ledger, rows))

    @contextlib.asynccontextmanager
    async def _client(self, handle: BatchHandle) -> AsyncIterator[BatchClient]:
        cfg = self._ctx.config.providers.get(handle.provider)
        if cfg is None:
            raise ConfigError(f"providers.{handle.provider}", f"batch {handle.batch_id}'s provider is not configured")
        client = make_client(handle.provider, cfg, self._environ, self._sim_url)
        try:
            yield client
        finally:
            await client.aclose()


def _handle_for(
    chosen: Candidate | None, first: ChatRequest | None, plans: list[tuple[int, ChatRequest, Plan]], total: int,
    key: str, now: float,
) -> BatchHandle:  # fmt: skip
    job = plans[0][2].resolution.job if plans else (first.task or "" if first else "")
    model = chosen.model if chosen is not None else None
    return BatchHandle(
        batch_id="", provider=chosen.provider if chosen else "", model=chosen.name if chosen else "",
        model_id=model.id if model else "", model_class=model.model_class if model else "", task=job,
        tenant=first.tenant if first else "default", caller=first.caller if first else "default", ts=now,
        total=total, items=(), price=batch_rate(model.price, model.batch_price) if model else None,
        billing=model.billing if model else "metered", max_tokens=first.max_tokens if first else None,
        content_key=key,
    )  # fmt: skip


def _content_key(
    requests: list[tuple[int, ChatRequest]], refused: list[RefusedItem], options: Mapping[str, Any]
) -> str:
    """A hash of what was asked: the same inputs and options find the batch already sent for them."""
    digest = hashlib.sha256()
    for index, request in requests:
        digest.update(b"%d:" % index + msgspec.json.encode(msgspec.structs.replace(request, request_id="")) + b"\n")
    for item in refused:
        digest.update(b"%d!" % item.index + item.message.encode() + b"\n")
    digest.update(repr(sorted(options)).encode())
    return digest.hexdigest()


def _usage_of(rows: tuple[LedgerRecord, ...]) -> Usage:
    """What an item's attempt row says it used (nothing, for an item that never ran)."""
    attempt = next((r for r in rows if type(r) is AttemptRecord), None)
    if attempt is None:
        return Usage()
    return Usage(
        input_tokens=attempt.input_tokens, output_tokens=attempt.output_tokens,
        cache_read_tokens=attempt.cache_read_tokens, cache_write_tokens=attempt.cache_write_tokens,
    )  # fmt: skip


def _progress(handle: BatchHandle, status: BatchStatus | None) -> BatchProgress:
    counts = status.counts if status is not None else BatchCounts()
    return BatchProgress(
        batch_id=handle.batch_id, provider=handle.provider, model=handle.model,
        phase=status.phase if status is not None else "ended",
        status=status.status if status is not None else "refused", counts=counts, refused=len(handle.refused),
        total=handle.total,
    )  # fmt: skip

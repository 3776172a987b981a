"""Simulator, provider batches: the store both batch APIs share, and how one batched item is answered.

A batch is kept as one JSON file under the store's directory (``INTERLOCK_SIM_BATCH_DIR``, else
``<tmp>/interlock-simulator-batches``), uploaded files beside it, so a batch outlives the
process that took it: a door in another process (``interlock batch collect`` after
``interlock batch submit``) starts its own simulator, which finds the batch on disk, as a real
provider keeps a batch across its clients' restarts.

A batch stays in progress for ``completion_delay_s`` after it was created (wall clock of the
simulator's clock, so a ``FakeClock`` moves it too; ``INTERLOCK_SIM_BATCH_DELAY_S`` sets the
default). The first look after that answers every item once and keeps the results: each item
is decided as an interactive request of its model would be (a scripted fault for the model
first, ``Simulator.script``, then an outage, then the behaviour's seeded draw), so scripting
``ServerError()`` for a model fails that item alone: partial failures. A fault with a status
(rate limit, server error, unavailable, overloaded; an error after usage, a reset, a drop, a
malformed body) makes an errored item with that status; every other fault shapes an answer.
``window_items`` (None: no limit) lets only the first N items of a batch run in its window: the
rest expire, as items do when a provider's 24-hour window runs out. A cancel is seen at the next
look: every item not yet answered is cancelled.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import anyio
import msgspec

from interlock._clock import Clock
from interlock.adapters.simulator._behaviour import (
    STATUS_OF,
    Drop,
    ErrorAfterUsage,
    Fault,
    Malformed,
    Reset,
    SimConfig,
    draw_plan,
    fault_kind,
    request_rng,
)
from interlock.adapters.simulator._wire import WireFormat, build_reply

__all__ = ["BatchSettings", "BatchStore", "StoredBatch", "StoredItem", "StoredResult"]

DIR_ENV = "INTERLOCK_SIM_BATCH_DIR"
DELAY_ENV = "INTERLOCK_SIM_BATCH_DELAY_S"
Faults = Callable[[str], "Fault | None"]  # the model's next forced fault (a script or an outage), if any
ResultKind = Literal["succeeded", "errored", "expired", "canceled"]


class BatchSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the simulated batch APIs behave: the delay before a batch ends, the items its window holds."""

    completion_delay_s: float = 1.0
    window_items: int | None = None


class StoredItem(msgspec.Struct, frozen=True):
    """One request of a batch: its caller's id and its request body (JSON text)."""

    custom_id: str
    body: str


class StoredResult(msgspec.Struct, frozen=True):
    """One item's outcome: ``body`` is the response (or error) body as JSON text, ``status`` its HTTP status."""

    custom_id: str
    kind: ResultKind
    status: int = 0
    body: str = ""


class StoredBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A batch as kept on disk; ``failure`` is why a batch whose input did not validate failed."""

    id: str
    format: Literal["openai", "anthropic"]
    created_at: float
    due_at: float
    items: tuple[StoredItem, ...]
    endpoint: str = ""
    input_file_id: str = ""
    cancel_requested_at: float | None = None
    ended_at: float | None = None
    results: tuple[StoredResult, ...] = ()
    failure: str = ""

    @property
    def phase(self) -> Literal["in_progress", "cancelling", "ended"]:
        """Where the batch is: running, asked to stop, or done (every item has its result)."""
        if self.ended_at is not None:
            return "ended"
        return "in_progress" if self.cancel_requested_at is None else "cancelling"

    def count(self, kind: ResultKind) -> int:
        """How many items ended as ``kind``."""
        return sum(1 for r in self.results if r.kind == kind)


class StoredFile(msgspec.Struct, frozen=True):
    """An uploaded file's metadata (its bytes are kept beside it)."""

    id: str
    filename: str
    purpose: str
    size: int
    created_at: float


_BATCH = msgspec.json.Decoder(StoredBatch)
_FILE = msgspec.json.Decoder(StoredFile)
_ENC = msgspec.json.Encoder()


def default_root() -> Path:
    """Where batches are kept: ``$INTERLOCK_SIM_BATCH_DIR``, else one directory in the temp dir."""
    found = os.environ.get(DIR_ENV)
    return Path(found) if found else Path(tempfile.gettempdir()) / "interlock-simulator-batches"


def default_settings() -> BatchSettings:
    """The settings a simulator starts with: ``$INTERLOCK_SIM_BATCH_DELAY_S`` seconds of delay (else 1)."""
    raw = os.environ.get(DELAY_ENV, "")
    try:
        delay = float(raw) if raw else 1.0
    except ValueError:
        delay = 1.0
    return BatchSettings(completion_delay_s=max(0.0, delay))


class BatchStore:
    """The batches and files of the simulated batch APIs, on disk under ``root``."""

    def __init__(self, config: SimConfig, clock: Clock, faults: Faults, root: Path | None = None) -> None:
        self.settings = default_settings()
        self.root = root if root is not None else default_root()
        self._config = config
        self._clock = clock
        self._faults = faults
        self._seq = 0
        # One look at a time: two polls racing past the due time would answer the items twice,
        # and a scripted fault is meant for one item.
        self._lock = anyio.Lock()

    def configure(self, *, completion_delay_s: float | None = None, window_items: int | None = None) -> None:
        """Change how later batches behave (a test's knob): the delay, the items a window holds."""
        delay = self.settings.completion_delay_s if completion_delay_s is None else completion_delay_s
        self.settings = BatchSettings(completion_delay_s=delay, window_items=window_items)

    # -- files -------------------------------------------------------------------------------

    async def put_file(self, data: bytes, filename: str, purpose: str) -> StoredFile:
        """Keep an uploaded file; returns its metadata with a new ``file-...`` id."""
        meta = StoredFile(f"file-sim{secrets.token_hex(8)}", filename, purpose, len(data), self._clock.wall())
        await self._write(self._files / f"{meta.id}.bin", data)
        await self._write(self._files / f"{meta.id}.json", _ENC.encode(meta))
        return meta

    async def file(self, file_id: str) -> tuple[StoredFile, bytes] | None:
        """An uploaded file and its bytes, or None when there is no such file."""
        if not _safe(file_id):
            return None
        meta = await self._read(self._files / f"{file_id}.json")
        data = await self._read(self._files / f"{file_id}.bin")
        return None if meta is None or data is None else (_FILE.decode(meta), data)

    # -- batches -----------------------------------------------------------------------------

    async def create(
        self, fmt: Literal["openai", "anthropic"], items: tuple[StoredItem, ...], *, prefix: str,
        endpoint: str = "", input_file_id: str = "", failure: str = "",
    ) -> StoredBatch:  # fmt: skip
        """A new batch of ``items``, due ``completion_delay_s`` from now (ended at once when it ``failure``)."""
        now = self._clock.wall()
        batch = StoredBatch(
            id=f"{prefix}{secrets.token_hex(12)}", format=fmt, created_at=now,
            due_at=now + self.settings.completion_delay_s, items=items, endpoint=endpoint,
            input_file_id=input_file_id, failure=failure, ended_at=now if failure else None,
        )  # fmt: skip
        await self._save(batch)
        return batch

    async def get(self, batch_id: str, wire: WireFormat) -> StoredBatch | None:
        """The batch as it stands now: answered and ended at the first look past its due time."""
        async with self._lock:
            return await self._look(batch_id, wire)

    async def _look(self, batch_id: str, wire: WireFormat) -> StoredBatch | None:
        batch = await self._load(batch_id)
        if batch is None or batch.ended_at is not None:
            return batch
        now = self._clock.wall()
        if batch.cancel_requested_at is not None:
            results = tuple(StoredResult(i.custom_id, "canceled") for i in batch.items)
        elif now >= batch.due_at:
            results = self._answer_all(batch, wire)
        else:
            return batch
        batch = msgspec.structs.replace(batch, results=results, ended_at=now)
        await self._save(batch)
        return batch

    async def cancel(self, batch_id: str) -> StoredBatch | None:
        """Ask a batch to stop; it ends at the next look, its unanswered items cancelled."""
        async with self._lock:
            batch = await self._load(batch_id)
            if batch is None or batch.ended_at is not None or batch.cancel_requested_at is not None:
                return batch
            batch = msgspec.structs.replace(batch, cancel_requested_at=self._clock.wall())
            await self._save(batch)
            return batch

    def _answer_all(self, batch: StoredBatch, wire: WireFormat) -> tuple[StoredResult, ...]:
        window = self.settings.window_items
        out: list[StoredResult] = []
        for index, item in enumerate(batch.items):
            if window is not None and index >= window:
                out.append(StoredResult(item.custom_id, "expired"))
                continue
            status, body = self.answer(wire, item.body.encode(), f"{batch.id}/{item.custom_id}")
            out.append(StoredResult(item.custom_id, "succeeded" if status == 200 else "errored", status, body.decode()))
        return tuple(out)

    def answer(self, wire: WireFormat, body: bytes, key: str) -> tuple[int, bytes]:
        """The status and body an interactive, non-streamed call with ``body`` would get."""
        try:
            ask = wire.decode(body, "", False)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return 400, wire.error(400, f"invalid request body: {exc}")
        behaviour = self._config.behaviour(ask.model)
        rng = request_rng(self._config.seed, ask.model, zlib.crc32(key.encode()))
        plan = draw_plan(behaviour, rng, self._faults(ask.model))
        status = _status_of(plan.fault)
        if status:
            return status, wire.error(status, f"simulated {fault_kind(plan.fault)}")
        self._seq += 1
        reply = build_reply(wire.name, ask, plan, behaviour, self._seq, int(self._clock.wall()))
        return 200, wire.body(reply)

    # -- disk --------------------------------------------------------------------------------

    @property
    def _files(self) -> Path:
        return self.root / "files"

    async def _load(self, batch_id: str) -> StoredBatch | None:
        if not _safe(batch_id):
            return None
        raw = await self._read(self.root / f"{batch_id}.json")
        return None if raw is None else _BATCH.decode(raw)

    async def _save(self, batch: StoredBatch) -> None:
        await self._write(self.root / f"{batch.id}.json", _ENC.encode(batch))

    async def _read(self, path: Path) -> bytes | None:
        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await anyio.to_thread.run_sync(read)

    async def _write(self, path: Path, data: bytes) -> None:
        def write() -> None:
            # Written whole, then renamed: another process reading the batch sees the old or the new one.
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
            part.write_bytes(data)
            os.replace(part, path)

        await anyio.to_thread.run_sync(write)


def _status_of(fault: Fault) -> int:
    """The HTTP status a fault gives a batched item; 0 when the fault only shapes the answer."""
    if isinstance(fault, ErrorAfterUsage):
        return fault.status
    if isinstance(fault, Reset | Drop | Malformed):
        return 500  # a batch item has no connection to break: the provider reports a server error
    return STATUS_OF.get(type(fault), 0)


def _safe(name: str) -> bool:
    """An id the store made (letters, digits, ``-`` and ``_``): never a path out of its directory."""
    return bool(name) and all(c.isalnum() or c in "-_" for c in name)

"""Supervisors with OTP semantics.

A supervisor starts its children in order, watches them, and restarts them by its strategy:

- ``one_for_one``: only the child that exited is restarted;
- ``one_for_all``: every other child is stopped (in reverse order), then all are restarted;
- ``rest_for_one``: the children started after it are stopped, then it and they are restarted.

A child's restart type decides whether an exit calls for a restart: ``permanent`` always,
``transient`` only after a crash, ``temporary`` never. More than ``max_restarts`` restarts within
``period`` seconds (OTP defaults: 1 in 5 s) and the supervisor stops everything and escalates by
raising ``SupervisorEscalation`` to its parent. Children stop in reverse start order, each given
its ``shutdown`` deadline before it is cancelled.

An actor's mailbox (its ``_Cell``) belongs to its name in the runtime's registry, not to one
supervisor instance: a supervisor that ends (it escalated, or its parent stopped it to restart
it) parks its children's cells, and the instance its parent starts next takes them back, so
every ``ActorRef`` handed out before stays valid across a restart of its supervisor too. While
parked a cell refuses messages (``ActorStopped``). A cell is closed for good only when its child
is forgotten (temporary, transient and done, terminated), when a restarted supervisor no longer
has a child of that name, or when the runtime ends.
"""

from __future__ import annotations

import collections
import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast, final

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._actor import Actor, ActorRef, _Cell
from ._clock import Clock, RealClock
from ._errors import InterlockError, SupervisorEscalation


class Strategy(enum.StrEnum):
    """Which children a crash takes down with it."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    """When an exited child is restarted."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@final
@dataclass(frozen=True)
class ChildSpec:
    """How to start one child: a name, a factory for a fresh instance, restart type, shutdown deadline."""

    name: str
    start: Callable[[], Actor[Any] | Supervisor]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    mailbox_size: int | None = None


class ChildInfo(msgspec.Struct, frozen=True):
    """A child as its supervisor sees it."""

    name: str
    running: bool
    restarts: int
    kind: str


class Registry:
    """Names to actor refs, shared by every supervisor of one runtime; it also holds parked cells."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef[Any]] = {}
        self._parked: dict[str, _Cell] = {}

    def add(self, name: str, ref: ActorRef[Any]) -> None:
        if name in self._refs:
            raise InterlockError(f"an actor named {name!r} is already registered")
        self._refs[name] = ref

    def claim(self, name: str, capacity: int) -> _Cell:
        """The cell for a new child ``name``: the one parked under that name, else a fresh one."""
        cell = self._parked.pop(name, None)
        if cell is None:
            cell = _Cell(name, capacity)
            self.add(name, ActorRef(cell))
        return cell

    def park(self, name: str, cell: _Cell) -> None:
        """Keep ``cell`` (and its ref) for the next child of that name; it refuses messages meanwhile."""
        cell.accepting = False
        self._parked[name] = cell

    def close_parked(self, names: Sequence[str] | None = None) -> None:
        """Close the parked cells among ``names`` (every parked cell when None) and forget their names."""
        for name in list(self._parked) if names is None else names:
            cell = self._parked.pop(name, None)
            if cell is not None:
                cell.close()
                self.remove(name)

    def remove(self, name: str) -> None:
        self._refs.pop(name, None)

    def get(self, name: str) -> ActorRef[Any] | None:
        return self._refs.get(name)


class _Child:
    __slots__ = ("cell", "done", "generation", "instance", "restarts", "running", "scope", "spec", "stopping")

    def __init__(self, spec: ChildSpec, cell: _Cell | None, first: Actor[Any] | Supervisor) -> None:
        self.spec = spec
        self.cell = cell
        # The first instance is built when the child is added (to learn its kind); restarts build anew.
        self.instance: Actor[Any] | Supervisor | None = first
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.generation = 0
        self.restarts = 0
        self.running = False
        self.stopping = False


class _Started:
    """Wraps a TaskStatus to remember whether the child reported its start."""

    __slots__ = ("inner", "started_ok")

    def __init__(self, inner: TaskStatus[None]) -> None:
        self.inner = inner
        self.started_ok = False

    def started(self, value: None = None) -> None:
        self.started_ok = True
        self.inner.started(value)


_STOP = object()


class Supervisor:
    """Starts, watches and restarts children; nests under another supervisor as a child."""

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 1,
        period: float = 5.0,
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self._specs = list(children)
        self._children: list[_Child] = []
        self._restart_times: collections.deque[float] = collections.deque()
        self._clock: Clock = RealClock()
        self._registry = Registry()
        self._tg: TaskGroup | None = None
        self._exit_send: MemoryObjectSendStream[object] | None = None
        self._stop_requested = False
        self._lock = anyio.Lock()
        self._parked: list[str] = []  # names this instance (and its subtree) parked when it ended

    def __repr__(self) -> str:
        return f"Supervisor({self.name!r}, {self.strategy})"

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order, running or not, with its restart count."""
        return [
            ChildInfo(c.spec.name, c.running, c.restarts, "supervisor" if c.cell is None else "actor")
            for c in self._children
        ]

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any] | None:
        """Add and start a child at run time; returns its ref (None for a supervisor child)."""
        async with self._lock:
            child = self._new_child(spec)
            await self._start(child)
        return ActorRef(child.cell) if child.cell is not None else None

    async def terminate_child(self, name: str) -> None:
        """Stop a child by name and forget it, whatever its restart type."""
        async with self._lock:
            for child in self._children:
                if child.spec.name == name:
                    await self._stop(child)
                    self._forget(child)
                    return
        raise InterlockError(f"supervisor {self.name}: no child named {name!r}")

    def request_stop(self) -> None:
        """Ask the supervisor to stop its children in reverse order and return."""
        self._stop_requested = True
        if self._exit_send is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._exit_send.send_nowait(_STOP)

    async def _serve(self, clock: Clock, registry: Registry, *, task_status: TaskStatus[None]) -> None:
        self._clock, self._registry = clock, registry
        send, recv = anyio.create_memory_object_stream[object](1 << 16)
        self._exit_send = send
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    for spec in self._specs:
                        await self._start(self._new_child(spec))
                    task_status.started()
                    if not self._stop_requested:
                        await self._watch(recv)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stop_all()
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            send.close()
            recv.close()
            self._tg = None

    def _new_child(self, spec: ChildSpec) -> _Child:
        first = spec.start()
        cell = None
        if isinstance(first, Actor):
            cell = self._registry.claim(spec.name, spec.mailbox_size or first.mailbox_size)
        child = _Child(spec, cell, first)
        self._children.append(child)
        return child

    async def _watch(self, exits: MemoryObjectReceiveStream[object]) -> None:
        async for item in exits:
            if item is _STOP:
                return
            child, error, generation = cast("tuple[_Child, BaseException | None, int]", item)
            if generation != child.generation or child.stopping or child not in self._children:
                continue
            async with self._lock:
                await self._on_exit(child, error)

    async def _on_exit(self, child: _Child, error: BaseException | None) -> None:
        child.running = False
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            self._forget(child)
            return
        self._count_restart(error)
        index = self._children.index(child)
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = list(self._children)
        else:
            affected = self._children[index:]
        for other in reversed(affected):
            if other is not child and other.running:
                await self._stop(other)
        for other in affected:
            if other is not child and other.spec.restart is Restart.TEMPORARY:
                self._forget(other)
                continue
            other.restarts += 1
            await self._restart(other)

    async def _restart(self, child: _Child) -> None:
        while True:
            try:
                await self._start(child)
                return
            except Exception as exc:
                self._count_restart(exc)

    def _count_restart(self, error: BaseException | None) -> None:
        now = self._clock.now()
        times = self._restart_times
        times.append(now)
        while times and times[0] < now - self.period:
            times.popleft()
        if len(times) > self.max_restarts:
            raise SupervisorEscalation(self.name, self.max_restarts, self.period, error)

    async def _start(self, child: _Child) -> None:
        assert self._tg is not None, "supervisor is not running"
        child.generation += 1
        child.stopping = False
        child.done = anyio.Event()
        child.scope = anyio.CancelScope()
        if child.cell is not None:
            child.cell.accepting = True
            child.cell.stop_token = None  # a stop left queued for the last incarnation is not for this one
        previous = child.instance
        instance = child.instance if child.generation == 1 else child.spec.start()
        child.instance = instance
        await self._tg.start(self._run_child, child, instance, child.generation)
        child.running = True
        if isinstance(previous, Supervisor) and previous is not instance:
            previous.close_parked()  # what the new subtree did not take back is gone for good

    async def _run_child(
        self, child: _Child, instance: Actor[Any] | Supervisor, generation: int, *, task_status: TaskStatus[None]
    ) -> None:
        status = _Started(task_status)
        error: BaseException | None = None
        try:
            with child.scope:
                if isinstance(instance, Supervisor):
                    await instance._serve(self._clock, self._registry, task_status=status)
                else:
                    assert child.cell is not None
                    await instance._actor_serve(child.cell, self._clock, task_status=status)
        except Exception as exc:
            if not status.started_ok:
                raise _unwrap(exc) from None
            error = _unwrap(exc)
        finally:
            child.done.set()
        if self._exit_send is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._exit_send.send_nowait((child, error, generation))

    async def _stop(self, child: _Child) -> None:
        child.stopping = True
        instance = child.instance
        if child.cell is not None:
            child.cell.request_stop()
        elif isinstance(instance, Supervisor):
            instance.request_stop()
        with anyio.move_on_after(child.spec.shutdown):
            await child.done.wait()
        if not child.done.is_set():
            child.scope.cancel()
            await child.done.wait()
        child.running = False

    def _forget(self, child: _Child) -> None:
        """Drop ``child`` for good: its mailbox (or, for a supervisor, its subtree's) closes."""
        if child in self._children:
            self._children.remove(child)
        if child.cell is not None:
            child.cell.close()
            self._registry.remove(child.spec.name)
        elif isinstance(child.instance, Supervisor):
            child.instance.close_parked()

    def close_parked(self) -> None:
        """Close the cells this instance parked when it ended; nothing will take them back."""
        names, self._parked = self._parked, []
        self._registry.close_parked(names)

    async def _stop_all(self) -> None:
        for child in reversed(list(self._children)):
            if child.running:
                await self._stop(child)
        # Parked, not closed: if the parent starts this supervisor again, the children's refs
        # keep working; if not, the parent (or the runtime) closes them.
        for child in list(self._children):
            self._children.remove(child)
            if child.cell is not None:
                self._registry.park(child.spec.name, child.cell)
                self._parked.append(child.spec.name)
            elif isinstance(child.instance, Supervisor):
                self._parked.extend(child.instance._parked)
                child.instance._parked = []


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc

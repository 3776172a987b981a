"""The runtime: the root supervisor, the name registry and the clock, in one ``async with``.

Leaving the block stops every actor in reverse start order and waits for it; nothing the
runtime started outlives the block. If the root supervisor escalates, the block's body is
cancelled and ``SupervisorEscalation`` is raised from it. A ref handed out by ``spawn`` or
``lookup`` stays valid while the runtime runs, across restarts of its actor and of the
supervisors above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, final

import anyio
from anyio.abc import TaskGroup

from ._actor import Actor, ActorRef
from ._clock import Clock, RealClock
from ._errors import ActorStopped
from ._supervisor import ChildSpec, Registry, Restart, Strategy, Supervisor, _unwrap

M = TypeVar("M")


@final
class Runtime:
    """Owns the root supervisor (``one_for_one``); spawn actors into it, look them up by name."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        max_restarts: int = 3,
        period: float = 5.0,
        shutdown: float = 30.0,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self._root = Supervisor("root", strategy=Strategy.ONE_FOR_ONE, max_restarts=max_restarts, period=period)
        self._registry = Registry()
        self._shutdown = shutdown
        self._tg: TaskGroup | None = None
        self._root_done = anyio.Event()

    @property
    def root(self) -> Supervisor:
        """The root supervisor."""
        return self._root

    async def spawn(
        self,
        factory: Callable[[], Actor[M]],
        *,
        name: str,
        restart: Restart = Restart.PERMANENT,
        shutdown: float = 5.0,
        mailbox_size: int | None = None,
    ) -> ActorRef[M]:
        """Start an actor under the root supervisor, registered as ``name``; returns its ref.

        The ref is typed by the actor's message type: ``spawn(lambda: LedgerActor(...))`` gives
        an ``ActorRef[LedgerMsg]``. (A ref found by name with ``lookup`` is an ``ActorRef[Any]``.)
        """
        ref = await self._root.start_child(ChildSpec(name, factory, restart, shutdown, mailbox_size))
        assert ref is not None  # an actor child always has a cell, hence a ref
        return ref

    async def spawn_supervisor(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 1,
        period: float = 5.0,
        shutdown: float = 10.0,
    ) -> None:
        """Start a nested supervisor with ``children`` under the root."""

        def build() -> Supervisor:
            return Supervisor(name, children, strategy=strategy, max_restarts=max_restarts, period=period)

        await self._root.start_child(ChildSpec(name, build, Restart.PERMANENT, shutdown))

    def lookup(self, name: str) -> ActorRef[Any]:
        """The ref registered as ``name``; ``ActorStopped`` if there is none."""
        ref = self._registry.get(name)
        if ref is None:
            raise ActorStopped(name, "not registered")
        return ref

    async def __aenter__(self) -> Runtime:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await tg.start(self._run_root)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        return self

    async def _run_root(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await self._root._serve(self.clock, self._registry, task_status=task_status)
        finally:
            # Nothing restarts the root: every mailbox it parked closes, answering what is queued.
            self._registry.close_parked()
            self._root_done.set()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._root.request_stop()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._shutdown):
            await self._root_done.wait()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None

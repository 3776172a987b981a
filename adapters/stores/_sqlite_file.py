"""One SQLite file opened through aiosqlite: the lifecycle both embedded stores share.

Opening prepares the file in a worker thread (WAL, migrations: the store's own ``prepare``),
connects with a busy timeout, and applies per-connection pragmas; closing is shielded, so a close
reached while cancelled still stops aiosqlite's worker thread. Operations of one process are
serialized on the one connection by ``lock``; other processes wait on SQLite's busy timeout.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import aiosqlite
import anyio
import anyio.to_thread

from interlock._errors import InterlockError


class SqliteFile(abc.ABC):
    """Base of a store kept in one SQLite file; subclasses say how to prepare it and name errors."""

    _what = "store"

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()

    @property
    def path(self) -> str:
        """The file this store lives in."""
        return self._path

    @abc.abstractmethod
    def _prepare(self, path: str, busy_timeout: float) -> None:
        """Create or migrate the file (runs in a worker thread, on a plain sqlite3 connection)."""

    @abc.abstractmethod
    def _error(self, problem: str) -> InterlockError:
        """The store's typed error naming its file and ``problem``."""

    _pragmas: Sequence[str] = ("PRAGMA synchronous=NORMAL",)  # durable across a process crash in WAL mode

    async def open(self) -> None:
        """Open the file, creating or upgrading its schema."""
        if self._conn is not None:
            return
        if self._path == ":memory:" or self._path.startswith("file::memory:"):
            raise self._error(f"an in-memory {self._what} is not supported: pass a file path")
        try:
            await anyio.to_thread.run_sync(self._prepare, self._path, self._busy_timeout)
            conn = await aiosqlite.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(f"cannot open: {exc}") from exc
        try:
            for pragma in self._pragmas:
                await conn.execute(pragma)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection; safe to call twice. An operation in progress finishes first."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await conn.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise self._error(f"the {self._what} is not open")
        return self._conn

"""Open the state store a ``StoreUrl`` names: the embedded SQLite file, or a Redis server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from interlock._errors import ConfigError
from interlock.adapters.stores._state_store import SqliteStateStore, StateStore
from interlock.policies._store_url import StoreUrl


@contextlib.asynccontextmanager
async def open_state_store(where: StoreUrl) -> AsyncIterator[StateStore]:
    """The state store at ``where``, open for the block and closed after it."""
    if where.kind == "sqlite":
        async with SqliteStateStore(where.path) as store:
            yield store
        return
    raise ConfigError("state.url", f"no {where.kind} state store in this build")

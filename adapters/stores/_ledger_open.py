"""Open the ledger store a ``StoreUrl`` names: the embedded SQLite file, or a PostgreSQL server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from interlock._errors import ConfigError
from interlock.adapters.stores._ledger_store import LedgerStore, SqliteLedgerStore
from interlock.policies._store_url import StoreUrl


@contextlib.asynccontextmanager
async def open_ledger_store(where: StoreUrl) -> AsyncIterator[LedgerStore]:
    """The ledger store at ``where``, open for the block and closed after it (flushed first)."""
    if where.kind == "sqlite":
        async with SqliteLedgerStore(where.path) as store:
            yield store
        return
    raise ConfigError("ledger.url", f"no {where.kind} ledger store in this build")

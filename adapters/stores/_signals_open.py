"""Open the provider-signals store a ``StoreUrl`` names: the state's SQLite file, or its Redis server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from interlock._errors import ConfigError
from interlock.adapters.stores._signals import ProviderSignals
from interlock.adapters.stores._signals_redis import RedisProviderSignals
from interlock.adapters.stores._signals_sqlite import SqliteProviderSignals
from interlock.policies._store_url import StoreUrl


@contextlib.asynccontextmanager
async def open_signals(
    where: StoreUrl, *, key_prefix: str = "interlock", timeout_s: float = 0.5
) -> AsyncIterator[ProviderSignals]:
    """The provider signals at ``where`` (the state store's address), open for the block and closed after it.

    ``key_prefix`` and ``timeout_s`` are Redis's (``[state] key_prefix`` and ``timeout_ms``).
    """
    if where.kind == "sqlite":
        async with SqliteProviderSignals(where.path) as sqlite:
            yield sqlite
        return
    if where.kind == "redis":
        async with RedisProviderSignals(where, key_prefix=key_prefix, timeout_s=timeout_s) as redis:
            yield redis
        return
    raise ConfigError("state.url", f"no {where.kind} provider signals store in this build")

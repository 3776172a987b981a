"""Open the state store a ``StoreUrl`` names: the embedded SQLite file, or a Redis server.

``open_state_store`` is an async context manager: the store is open inside the block and closed
when it ends, however it ends (a Redis store's connections and pool are closed, shielded from
cancellation, within a few seconds). Errors name the store as ``StoreUrl.shown``, never with
its password. redis-py is imported only when a Redis store is asked for, so the embedded default
needs nothing installed beyond interlock itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from interlock._errors import ConfigError
from interlock.adapters.stores._state_store import SqliteStateStore, StateStore
from interlock.policies._config_sections import StateConfig
from interlock.policies._store_url import StoreUrl


@contextlib.asynccontextmanager
async def open_state_store(where: StoreUrl, settings: StateConfig | None = None) -> AsyncIterator[StateStore]:
    """The state store at ``where``, open for the block and closed after it.

    ``settings`` is the config's ``[state]`` table; only a Redis store reads it (``key_prefix``,
    ``cache_max_entries``, ``timeout_ms``).
    """
    if where.kind == "sqlite":
        async with SqliteStateStore(where.path) as store:
            yield store
        return
    if where.kind == "redis":
        try:
            from interlock.adapters.stores._redis_state import RedisStateStore
        except ImportError:
            raise ConfigError("state.url", f"{where.shown} needs redis-py: pip install 'interlock[redis]'") from None
        cfg = settings or StateConfig()
        redis_store = RedisStateStore(
            where, key_prefix=cfg.key_prefix, cache_max_entries=cfg.cache_max_entries, timeout_s=cfg.timeout_ms / 1000
        )
        async with redis_store:
            yield redis_store
        return
    raise ConfigError("state.url", f"no {where.kind} state store in this build")

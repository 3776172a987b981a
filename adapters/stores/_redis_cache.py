"""The Redis ``CacheStore``: cached answers with the caller's expiry, and a bound on how many are kept.

Each value is stored with its expiry in front (8 bytes, a big-endian double), so a lookup is one
``GET`` and the expiry is judged against the caller's ``now``, as in the SQLite store. A put is
one script: it stores the value, indexes its key by expiry, and, past ``cache_max_entries``,
evicts the entries that expire first (expired ones before all others), so the cache's memory on
the server stays bounded whether or not anyone calls ``purge``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, final

from interlock.adapters.stores import _redis_scripts as lua

if TYPE_CHECKING:
    from interlock.adapters.stores._redis_state import RedisStateStore

_EXPIRY: Final = struct.Struct(">d")


@final
class RedisCache:
    """``CacheStore`` on a ``RedisStateStore``."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> bytes | None:
        store = self._store
        raw = await store.call("cache get", store.client().get(f"{store.prefix}:c:{key}"))
        if not isinstance(raw, bytes) or len(raw) < _EXPIRY.size or _EXPIRY.unpack_from(raw)[0] <= now:
            return None
        return raw[_EXPIRY.size :]

    async def put(self, key: str, value: bytes, expires_at: float) -> None:
        store = self._store
        stored = _EXPIRY.pack(expires_at) + value
        args = (store.prefix, key, stored, repr(float(expires_at)), str(store.cache_max_entries))
        await store.script("cache put", lua.CACHE_PUT, *args)

    async def purge(self, now: float) -> int:
        return int(await self._store.script("cache purge", lua.CACHE_PURGE, self._store.prefix, repr(float(now))))

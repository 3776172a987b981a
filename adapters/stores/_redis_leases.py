"""The Redis ``LeaseStore``: concurrency slots shared by every gateway on the server, each with a TTL.

A scope's leases are a sorted set scored by expiry (the caller's epoch seconds); taking one is a
script that first drops the expired, then counts the others and adds this one only below the
limit, so no two gateways can take the last slot at once. A holder that dies leaves its slots
until their TTL passes (``lease_ttl_s``, renewed every third of it while the call runs): unlike
the SQLite store, no liveness check can see a process on another machine, so the TTL is the
whole of the recovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from interlock.adapters.stores import _redis_scripts as lua

if TYPE_CHECKING:
    from interlock.adapters.stores._redis_state import RedisStateStore


@final
class RedisLeases:
    """``LeaseStore`` on a ``RedisStateStore``."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store

    async def acquire(self, scope: str, limit: int, lease_id: str, now: float, ttl_s: float) -> bool:
        args = (self._store.prefix, scope, str(int(limit)), lease_id, repr(float(now)), repr(float(now + ttl_s)))
        return int(await self._store.script("lease acquire", lua.ACQUIRE, *args)) == 1

    async def renew(self, lease_id: str, now: float, ttl_s: float) -> bool:
        args = (self._store.prefix, lease_id, repr(float(now)), repr(float(now + ttl_s)))
        return int(await self._store.script("lease renew", lua.RENEW, *args)) == 1

    async def release(self, lease_id: str) -> bool:
        return int(await self._store.script("lease release", lua.RELEASE_LEASE, self._store.prefix, lease_id)) == 1

    async def holders(self, scope: str, now: float) -> int:
        store = self._store
        key = f"{store.prefix}:l:s:{scope}"
        return int(await store.call("lease holders", store.client().zcount(key, f"({float(now)!r}", "+inf")))

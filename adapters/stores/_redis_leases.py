"""The Redis ``LeaseStore``: concurrency slots shared by every gateway on the server, each with a TTL.

A scope's leases are a sorted set scored by expiry (the caller's epoch seconds); taking one is a
script that first drops the expired, then counts the others and adds this one only below the
limit, so no two gateways can take the last slot at once. Each lease records its holder
(``_holder``: host, pid, start time). A scope that looks full is looked at again before a
refusal: the leases in it whose holder ran on this host and no longer runs (SIGKILLed, say) are
released, and the script tries once more, so a gateway restarted after a crash is not kept
waiting for its dead predecessor's slots. Two gateways freeing the same dead lease at once is
harmless (the second release finds nothing), and the retry is the same atomic script, so the
limit holds. No check can see a process on another machine: a holder there that dies leaves its
slots until their TTL passes (``lease_ttl_s``, renewed every third of it while the call runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import msgspec

from interlock.adapters.stores import _redis_scripts as lua
from interlock.adapters.stores._holder import Holder, is_running, this_process

if TYPE_CHECKING:
    from interlock.adapters.stores._redis_state import RedisStateStore


@final
class RedisLeases:
    """``LeaseStore`` on a ``RedisStateStore``."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store

    async def acquire(self, scope: str, limit: int, lease_id: str, now: float, ttl_s: float) -> bool:
        holder = msgspec.json.encode(this_process())
        args = (
            self._store.prefix, scope, str(int(limit)), lease_id, repr(float(now)), repr(float(now + ttl_s)), holder,
        )  # fmt: skip
        if int(await self._store.script("lease acquire", lua.ACQUIRE, *args)) == 1:
            return True
        # Only a full scope pays for the liveness checks: the common case reads no /proc. The second
        # try follows whatever the check found: a peer that found the scope full at the same moment
        # may have released the dead leases first, and the slot it did not take is free now.
        await self._free_dead_holders(scope, now)
        return int(await self._store.script("lease acquire", lua.ACQUIRE, *args)) == 1

    async def _free_dead_holders(self, scope: str, now: float) -> int:
        """Release the leases of ``scope`` whose holder ran on this host and no longer runs; how many were dead."""
        store = self._store
        found = await store.script("lease holders", lua.SCOPE_HOLDERS, store.prefix, scope, repr(float(now)))
        dead = 0
        for lid, who in zip(found[::2], found[1::2], strict=True):
            holder = _holder_of(who)
            if holder is not None and not is_running(holder):
                await store.script("lease release", lua.RELEASE_LEASE, store.prefix, lid)
                dead += 1
        return dead

    async def renew(self, lease_id: str, now: float, ttl_s: float) -> bool:
        args = (self._store.prefix, lease_id, repr(float(now)), repr(float(now + ttl_s)))
        return int(await self._store.script("lease renew", lua.RENEW, *args)) == 1

    async def release(self, lease_id: str) -> bool:
        return int(await self._store.script("lease release", lua.RELEASE_LEASE, self._store.prefix, lease_id)) == 1

    async def holders(self, scope: str, now: float) -> int:
        store = self._store
        key = f"{store.prefix}:l:s:{scope}"
        return int(await store.call("lease holders", store.client().zcount(key, f"({float(now)!r}", "+inf")))


def _holder_of(recorded: bytes | str) -> Holder | None:
    """The holder a lease recorded, or None when it recorded none (or something not ours)."""
    try:
        return msgspec.json.decode(recorded, type=Holder) if recorded else None
    except msgspec.DecodeError:
        return None

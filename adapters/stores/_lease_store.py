"""The SQLite ``LeaseStore``: machine-wide slots that know their holders, so a dead holder's slots free at once.

Each lease row records the process that took it (``interlock.adapters.stores._holder``). A scope
that looks full is looked at again before a refusal: the leases of every holder of it that no
longer runs are deleted (all of that holder's leases, in every scope), in the same
``BEGIN IMMEDIATE`` transaction that counts and inserts, so no two processes can both see the
same freed slot. A process killed while it held slots therefore blocks a restarted one for no
time at all, where the TTL alone kept them taken for up to ``lease_ttl_s``. The TTL stays for
what a liveness check cannot see: a holder on another host or in another pid namespace, and a
process that runs but has hung.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from interlock.adapters.stores._holder import Holder, is_running, this_process

if TYPE_CHECKING:
    import aiosqlite

    from interlock.adapters.stores._state_store import SqliteStateStore

_INSERT = (
    "INSERT OR REPLACE INTO leases (lease_id, scope, expires_at, holder_host, holder_pid, holder_start)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


@final
class SqliteLeases:
    """``LeaseStore`` over the ``leases`` table of a ``SqliteStateStore``."""

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store

    async def acquire(self, scope: str, limit: int, lease_id: str, now: float, ttl_s: float) -> bool:
        me = this_process()
        async with self._store._transaction() as conn:
            # Expired leases of a process that died go first: they are what frees its slots.
            await conn.execute("DELETE FROM leases WHERE scope = ? AND expires_at <= ?", (scope, now))
            # Only a full scope pays for the liveness checks: the common case reads no /proc.
            full = await _others(conn, scope, lease_id) >= limit
            if full and (not await _free_dead_holders(conn, scope) or await _others(conn, scope, lease_id) >= limit):
                return False
            await conn.execute(_INSERT, (lease_id, scope, now + ttl_s, me.host, me.pid, me.start))
        return True

    async def renew(self, lease_id: str, now: float, ttl_s: float) -> bool:
        sql = "UPDATE leases SET expires_at = ? WHERE lease_id = ? AND expires_at > ?"
        return await self._store._execute(sql, (now + ttl_s, lease_id, now)) > 0

    async def release(self, lease_id: str) -> bool:
        return await self._store._execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,)) > 0

    async def holders(self, scope: str, now: float) -> int:
        sql = "SELECT COUNT(*) FROM leases WHERE scope = ? AND expires_at > ?"
        return int(await self._store._scalar(sql, (scope, now)))


async def _others(conn: aiosqlite.Connection, scope: str, lease_id: str) -> int:
    """Leases of ``scope`` other than ``lease_id`` (re-acquiring one's own lease takes no second slot)."""
    sql = "SELECT COUNT(*) FROM leases WHERE scope = ? AND lease_id != ?"
    rows = list(await conn.execute_fetchall(sql, (scope, lease_id)))
    return int(rows[0][0])


async def _free_dead_holders(conn: aiosqlite.Connection, scope: str) -> int:
    """Delete every lease of each holder of ``scope`` that no longer runs; return how many holders went."""
    sql = "SELECT DISTINCT holder_host, holder_pid, holder_start FROM leases WHERE scope = ?"
    rows = await conn.execute_fetchall(sql, (scope,))
    holders = [Holder(str(host), int(pid), int(start)) for host, pid, start in rows]
    dead = [h for h in holders if not is_running(h)]
    if dead:
        await conn.executemany(
            "DELETE FROM leases WHERE holder_host = ? AND holder_pid = ? AND holder_start = ?",
            [(h.host, h.pid, h.start) for h in dead],
        )
    return len(dead)

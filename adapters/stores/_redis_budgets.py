"""The Redis ``BudgetStore``: reserve and settle as one Lua script each, the SQLite store's rules to the letter.

A scope has room when it is not closed for the day and its settled spend plus the reservations
unexpired at the caller's ``now`` plus the amount stay within its limit (``SLACK`` for float
drift); a settlement is booked in full, and one above its reservation closes the reservation's
scopes for the day (``passes_reservation`` is the same rule, in Lua). A reservation that expired
stops counting but may still settle until ``purge_reservations`` removes it.

Housekeeping, so a server shared for months does not fill up: each reservation and each day's
holds are aged out by the server ``RESERVATION_KEEP_S`` after the reservation's own expiry, and a
day's settled spend ``SPEND_KEEP_S`` after its last settlement (relative ``PEXPIRE``, so the
caller's clock still decides everything that counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

from interlock._errors import BudgetExceeded
from interlock.adapters.stores import _redis_scripts as lua
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import Reservation
from interlock.policies._budget import SLACK, Unit

if TYPE_CHECKING:
    from interlock.adapters.stores._redis_state import RedisStateStore

RESERVATION_KEEP_S: Final = 2 * 86_400.0  # past a reservation's expiry: a late settle still finds it
SPEND_KEEP_S: Final = 40 * 86_400.0  # a day's spend outlives the day by more than any report needs it
_SLACK: Final = repr(SLACK)


def _number(value: float) -> str:
    """``value`` as the scripts read it: the shortest text that round-trips exactly."""
    return repr(float(value))


def checked(unit: Unit, amount: float) -> float:
    """``amount`` if it is a finite amount >= 0 (and whole, for tokens); else the SQLite store's ValueError."""
    if not (amount == amount and 0 <= amount < float("inf")):
        raise ValueError(f"an amount must be finite and >= 0, got {amount!r}")
    if unit == "tokens" and amount != int(amount):
        raise ValueError(f"a token amount must be whole, got {amount!r}")
    return float(amount)


@final
class RedisBudgets:
    """``BudgetStore`` on a ``RedisStateStore``."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store

    async def reserve(
        self,
        scopes: Sequence[tuple[str, float]],
        *,
        day: str,
        amount: float,
        reservation_id: str,
        now: float,
        expires_at: float,
        unit: Unit = "cents",
    ) -> Reservation:
        value = checked(unit, amount)
        names = tuple(scope for scope, _ in scopes)
        if len(set(names)) != len(names):
            raise ValueError(f"a reservation names each scope once, got {names!r}")
        keep_ms = round((max(expires_at - now, 0.0) + RESERVATION_KEEP_S) * 1000)
        args: list[str] = [
            self._store.prefix, day, unit, _number(value), reservation_id, _number(now), _number(expires_at),
            _SLACK, str(keep_ms),
        ]  # fmt: skip
        for scope, limit in scopes:
            args += (scope, _number(limit))
        reply = await self._store.script("reserve", lua.RESERVE, *args)
        granted = int(reply[0])
        if granted == 0:
            index = int(reply[1])
            scope, limit = scopes[index]
            raise BudgetExceeded(scope, limit, float(reply[2]), unit)
        if granted < 0:
            raise StateStoreError(self._store.shown, f"reservation {reservation_id!r} is already held")
        return Reservation(reservation_id, day, value, unit, names, float(expires_at))

    async def settle(self, reservation_id: str, actual: float) -> bool:
        keep_ms = str(round(SPEND_KEEP_S * 1000))
        args = (self._store.prefix, reservation_id, _number(actual), _SLACK, keep_ms)
        done = int(await self._store.script("settle", lua.SETTLE, *args))
        if done == -1:
            raise ValueError(f"an amount must be finite and >= 0, got {actual!r}")
        if done == -2:
            raise ValueError(f"a token amount must be whole, got {actual!r}")
        return done == 1

    async def release(self, reservation_id: str) -> bool:
        return int(await self._store.script("release", lua.RELEASE, self._store.prefix, reservation_id)) == 1

    async def spent(self, scope: str, day: str, *, unit: Unit = "cents") -> float:
        key = f"{self._store.prefix}:b:s:{day}:{scope}"
        value = await self._store.call("spent", self._store.client().hget(key, unit))
        return 0.0 if value is None else float(value)

    async def used(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        spent, reserved = await self._room(scope, day, now, unit)
        return spent + reserved

    async def reserved(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        return (await self._room(scope, day, now, unit))[1]

    async def closed(self, scope: str, day: str) -> bool:
        key = f"{self._store.prefix}:b:s:{day}:{scope}"
        return await self._store.call("closed", self._store.client().hget(key, "closed")) == b"1"

    async def purge_reservations(self, before: float) -> int:
        return int(await self._store.script("purge", lua.PURGE_RESERVATIONS, self._store.prefix, _number(before)))

    async def _room(self, scope: str, day: str, now: float, unit: Unit) -> tuple[float, float]:
        """Settled spend and unexpired reservations of ``scope`` on ``day``, read at one instant."""
        reply = await self._store.script("used", lua.USED, self._store.prefix, scope, day, _number(now), unit)
        return float(reply[0]), float(reply[1])

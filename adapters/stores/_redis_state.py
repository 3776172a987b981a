"""The Redis state store: the response cache, budgets and concurrency leases on a server gateways share.

``RedisStateStore`` implements the same three protocols as ``SqliteStateStore`` (``CacheStore``,
``BudgetStore``, ``LeaseStore`` in ``_state_store``) with the same semantics, over redis-py's
asyncio client: every check-then-write is one server-side Lua script (``_redis_scripts``), so
reservations stay within their limits across machines as they do across the processes of one
host. Times are the caller's epoch seconds, never the server's clock.

Use ``async with RedisStateStore(url) as store:``; entering connects and PINGs, so a wrong
address or password fails at start with the address named. Every redis-py error becomes a
``StateStoreError`` here, at this adapter's one seam, naming the address as ``StoreUrl.shown``
(its password as ``***``); the server being unreachable (refused, reset, timed out, still
loading) is ``StateStoreUnavailable``, the case the rails' outage policy is about
(``interlock.actors.rails._state_outage``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Final, TypeVar, final

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, BusyLoadingError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from interlock._errors import ErrorClass
from interlock.adapters.stores._redis_budgets import RedisBudgets
from interlock.adapters.stores._redis_cache import RedisCache
from interlock.adapters.stores._redis_leases import RedisLeases
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import BudgetStore, CacheStore, LeaseStore
from interlock.policies._store_url import StoreUrl, parse_store_url

T = TypeVar("T")
_CLOSE_GRACE_S: Final = 5.0


class StateStoreUnavailable(StateStoreError):
    """The state server could not be reached (refused, reset, timed out, still loading): the store is down.

    Its kind is ``overloaded``: to a client, a dependency that is down is a retryable 503, the
    answer the rails give when they refuse for the same outage, not a 500 (a bug of ours).
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.kind = ErrorClass.OVERLOADED


@final
class RedisStateStore:
    """The shared state store: cache, budgets and leases on one Redis server, every key under ``key_prefix:``.

    ``cache_max_entries`` bounds the response cache (the entries that expire first go first);
    ``timeout_s`` bounds each call's connect and reply, so an unreachable server costs a
    request at most that long before the rails' outage policy decides.
    """

    def __init__(
        self,
        where: StoreUrl | str,
        *,
        key_prefix: str = "interlock",
        cache_max_entries: int = 100_000,
        timeout_s: float = 0.5,
    ) -> None:
        if isinstance(where, str):
            where = parse_store_url(where, key="state.url", allowed=("redis",), from_env=True)
        if where.kind != "redis":
            raise ValueError(f"a Redis state store needs a redis:// URL, got {where.shown}")
        if not key_prefix or any(ch.isspace() for ch in key_prefix):
            raise ValueError(f"key_prefix must be a non-empty word, got {key_prefix!r}")
        if cache_max_entries < 1:
            raise ValueError(f"cache_max_entries must be >= 1, got {cache_max_entries!r}")
        self._where = where
        self.prefix = key_prefix
        self.cache_max_entries = cache_max_entries
        self._timeout_s = timeout_s
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._cache = RedisCache(self)
        self._budgets = RedisBudgets(self)
        self._leases = RedisLeases(self)

    @property
    def shown(self) -> str:
        """The server's address as it may be shown: any password replaced by ``***``."""
        return self._where.shown

    @property
    def cache(self) -> CacheStore:
        """The response cache."""
        return self._cache

    @property
    def budgets(self) -> BudgetStore:
        """Daily spend and reservations."""
        return self._budgets

    @property
    def leases(self) -> LeaseStore:
        """The cross-machine concurrency limit."""
        return self._leases

    def __repr__(self) -> str:
        return f"RedisStateStore({self.shown!r}, key_prefix={self.prefix!r})"

    async def __aenter__(self) -> RedisStateStore:
        # One immediate retry: a pooled connection the server closed (a restart) reconnects once;
        # a server that is down fails at once, and the rails decide, rather than backing off here.
        client = aioredis.Redis.from_url(
            self._where.url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s,
            retry=Retry(NoBackoff(), 1), decode_responses=False,
        )  # fmt: skip
        self._client = client
        try:
            await self.call("connect", client.ping())
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its connection pool; safe to call twice, shielded from cancellation."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(_CLOSE_GRACE_S, shield=True):
                await client.aclose()

    def client(self) -> aioredis.Redis:
        """The open client (raises ``StateStoreError`` once closed)."""
        if self._client is None:
            raise StateStoreError(self.shown, "the store is not open")
        return self._client

    async def script(self, name: str, source: str, *args: str | bytes) -> Any:
        """Run the Lua script ``source`` (registered once, then by its SHA) with ``args``; errors translated."""
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.client().register_script(source)
        return await self.call(name, found(args=args))

    async def call(self, what: str, op: Awaitable[T]) -> T:
        """Await one Redis operation; a redis-py error becomes a ``StateStoreError`` naming ``what``."""
        try:
            return await op
        except RedisError as exc:
            # ``from None``: the store's own message names the address (redacted); a chained
            # client exception is printed whole in tracebacks and is not ours to vouch for.
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: RedisError) -> StateStoreError:
        problem = f"{what} failed: {type(exc).__name__}: {self._scrub(str(exc))}"
        down = isinstance(exc, RedisTimeoutError | BusyLoadingError) or (
            isinstance(exc, RedisConnectionError) and not isinstance(exc, AuthenticationError)
        )
        return StateStoreUnavailable(self.shown, problem) if down else StateStoreError(self.shown, problem)

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should a client message ever quote it."""
        url = self._where.url
        if "@" in url and "://" in url:
            credentials = url.split("://", 1)[1].split("@", 1)[0]
            secret = credentials.split(":", 1)[1] if ":" in credentials else ""
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

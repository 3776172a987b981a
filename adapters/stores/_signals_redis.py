"""Provider signals on a Redis server: the gateways of several hosts tell each other of breakers and cooldowns.

Two keys under ``<key_prefix>:signals:``: a hash, ``latest``, holding each origin's latest signal
per provider and kind (field ``provider|kind|origin``), and a stream, ``stream``, that every
signal is also appended to (trimmed to about ``STREAM_LEN`` entries). Both are written in one
MULTI, so a signal is in both or in neither. A reader's first read (cursor ``""``) takes the
stream's last id and the whole hash in one MULTI: the snapshot, and where to read on from. Later
reads are ``XREAD BLOCK``: a new signal reaches every reader as soon as it is written, without
a round trip per signal. A snapshot may also hold a signal the stream hands over again; the
reader drops what it has seen (``origin`` and ``at``).

The client is this module's own ``redis.asyncio`` client, made from ``StoreUrl.url``; every
redis-py error becomes a ``SignalsStoreError`` naming the server as ``StoreUrl.shown`` (its
password as ``***``). Nothing is asked of the server at open: a server that is down is the
reader's outage to log, not a reason to refuse a door (the state store decides that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar, final
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from interlock.adapters.stores._signals import ProviderSignal, SignalsStoreError, decode_signal, encode_signal
from interlock.policies._store_url import StoreUrl

T = TypeVar("T")
STREAM_LEN: Final = 10_000  # about this many recent signals stay in the stream; the hash keeps the latest of each
_START: Final = "0-0"
_CLOSE_GRACE_S: Final = 5.0


@final
class RedisProviderSignals:
    """Provider signals shared through one Redis server, every key under ``<key_prefix>:signals:``.

    ``timeout_s`` bounds each call's connect and reply; a blocking read waits ``wait_s`` on top.
    """

    def __init__(self, where: StoreUrl, *, key_prefix: str = "interlock", timeout_s: float = 0.5) -> None:
        if where.kind != "redis":
            raise ValueError(f"Redis provider signals need a redis:// URL, got {where.shown}")
        self._where = where
        self._timeout_s = timeout_s
        self._latest = f"{key_prefix}:signals:latest"
        self._stream = f"{key_prefix}:signals:stream"
        self._client: aioredis.Redis | None = None

    @property
    def pushes(self) -> bool:
        """A read waits on the stream for the next signal."""
        return True

    @property
    def shown(self) -> str:
        """The server's address, any password as ``***``."""
        return self._where.shown

    def __repr__(self) -> str:
        return f"RedisProviderSignals({self.shown!r}, {self._latest!r})"

    async def __aenter__(self) -> RedisProviderSignals:
        # No retry loop here: a server that is down fails the call at once and the reader decides.
        self._client = aioredis.Redis.from_url(
            self._where.url, socket_connect_timeout=self._timeout_s, retry=Retry(NoBackoff(), 1),
            decode_responses=False,
        )  # fmt: skip
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(_CLOSE_GRACE_S, shield=True):
                await client.aclose()

    async def publish(self, signal: ProviderSignal) -> None:
        """Keep ``signal`` in the hash as its origin's latest and append it to the stream, in one MULTI."""
        raw = encode_signal(signal)
        async with self._require().pipeline(transaction=True) as pipe:
            pipe.hset(self._latest, f"{signal.provider}|{signal.kind}|{signal.origin}", raw)
            pipe.xadd(self._stream, {"s": raw}, maxlen=STREAM_LEN, approximate=True)
            await self._call("publish a signal", pipe.execute(), self._timeout_s)

    async def purge(self, before: float) -> int:
        """Delete the hash's signals whose instants are all before ``before`` (the stream trims itself)."""
        client = self._require()
        found: dict[Any, Any] = await self._call("read signals", client.hgetall(self._latest), self._timeout_s)
        stale = [field for field, raw in found.items() if _stale(raw, before)]
        if stale:
            await self._call("purge signals", client.hdel(self._latest, *stale), self._timeout_s)
        return len(stale)

    async def changes(self, cursor: str, wait_s: float) -> tuple[Sequence[ProviderSignal], str]:
        """The snapshot for ``""``; else the stream's entries after ``cursor``, waiting up to ``wait_s`` for one."""
        if not cursor:
            return await self._snapshot()
        block = max(1, round(wait_s * 1000)) if wait_s > 0 else None
        read: Awaitable[Any] = self._require().xread({self._stream: cursor}, count=1000, block=block)
        found: list[Any] = await self._call("read signals", read, self._timeout_s + max(wait_s, 0.0)) or []
        signals: list[ProviderSignal] = []
        for _, entries in found:
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                signal = decode_signal(fields.get(b"s", b""))
                if signal is not None:
                    signals.append(signal)
        return signals, cursor

    async def _snapshot(self) -> tuple[Sequence[ProviderSignal], str]:
        async with self._require().pipeline(transaction=True) as pipe:
            pipe.xrevrange(self._stream, count=1)
            pipe.hvals(self._latest)
            last, values = await self._call("read signals", pipe.execute(), self._timeout_s)
        cursor = last[0][0].decode() if last else _START
        signals = [s for raw in values if (s := decode_signal(raw)) is not None]
        return sorted(signals, key=lambda s: s.at), cursor

    def _require(self) -> aioredis.Redis:
        if self._client is None:
            raise SignalsStoreError(self.shown, "the provider signals store is not open")
        return self._client

    async def _call(self, what: str, call: Awaitable[T], timeout_s: float) -> T:
        """Await one redis-py call within ``timeout_s``; its errors become ``SignalsStoreError`` naming ``what``."""
        try:
            with anyio.fail_after(timeout_s):
                return await call
        except TimeoutError:
            raise SignalsStoreError(self.shown, f"cannot {what}: no answer within {timeout_s:g} s") from None
        except (RedisError, OSError) as exc:
            # The type and the server's words only: a client exception may quote the URL it was given.
            problem = f"cannot {what}: {type(exc).__name__}: {_redacted(str(exc), self._where)}"
            raise SignalsStoreError(self.shown, problem) from None


def _stale(raw: bytes, before: float) -> bool:
    signal = decode_signal(raw)
    return signal is None or (signal.at < before and signal.until < before)


def _redacted(text: str, where: StoreUrl) -> str:
    """``text`` with the URL, and any password in it, replaced by what may be shown."""
    text = text.replace(where.url, where.shown)
    password = _password(where.url)
    return text.replace(password, "***") if password else text


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None

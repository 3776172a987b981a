"""Breakers and cooldowns shared across real processes: open in A is open in B, a 429 in A cools B.

Every process here is a real OS process (``tests/signals_worker.py``) governing two loopback
providers served by this test: ``failing`` answers 500, ``limited`` answers 429 with
``Retry-After: 30``; the server counts every call that reaches it. The processes share state
through a SQLite file, or through a real redis-server of the test's own (``tests/redis_server.py``).
Waiting is bounded polling with a deadline: a peer's view is read again until it changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from child_process import Child, child
from loopback import serve
from redis_server import RedisServer

from interlock._clock import RealClock
from interlock._errors import ErrorClass
from interlock.actors._provider_signals import cooldown_signal
from interlock.actors._shared_signals import SharedSignals, share_signals
from interlock.adapters.stores._signals import ProviderSignal, SignalsStoreError
from interlock.adapters.stores._signals_open import open_signals
from interlock.policies._store_url import parse_store_url

pytestmark = pytest.mark.anyio
DEADLINE_S = 15.0


@contextlib.asynccontextmanager
async def upstreams() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """The two providers on one loopback server (``/failing/v1``, ``/limited/v1``) and the calls each got."""
    calls = {"failing": 0, "limited": 0, "probes": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/models"):
            calls["probes"] += 1
            return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=500)
        if request.path.startswith("/failing/"):
            calls["failing"] += 1
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        calls["limited"] += 1
        body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
        return web.json_response(body, status=429, headers={"Retry-After": "30"})

    async with serve(handler) as url:
        yield url, calls


@contextlib.asynccontextmanager
async def worker(state: str, url: str) -> AsyncIterator[Child]:
    spec = {"state": state, "failing": f"{url}/failing/v1", "limited": f"{url}/limited/v1"}
    async with child("signals_worker.py", json.dumps(spec)) as proc:
        assert await proc.line() == "ready"
        try:
            yield proc
        finally:
            with contextlib.suppress(Exception), anyio.move_on_after(5, shield=True):
                await proc.send("quit")
                await proc.wait(5)


async def ask(proc: Child, command: str) -> Any:
    await proc.send(command)
    return json.loads(await proc.line())


async def until(proc: Child, command: str, holds: Callable[[Any], bool]) -> Any:
    """Ask ``command`` again until its answer ``holds``; fails after ``DEADLINE_S``."""
    with anyio.fail_after(DEADLINE_S):
        while not holds(answer := await ask(proc, command)):
            await anyio.sleep(0.01)  # a poll step, bounded by the deadline above
    return answer


async def fleet_shares_breakers_and_cooldowns(state: str) -> None:
    async with upstreams() as (url, calls), worker(state, url) as a, worker(state, url) as b:
        # A: four 500s open its breaker; B, told by A, refuses the provider without calling it.
        assert await ask(a, "call failing 4") == ["error:server_error"] * 4
        assert (await ask(a, "health failing"))["breaker"] == "open"
        seen = await until(b, "health failing", lambda h: h["breaker"] == "open")
        assert seen["causes"] == ["peer_opened"]
        assert await ask(b, "call failing 3") == ["rejected:breaker_open"] * 3
        assert calls["failing"] == 4

        # A: one 429 with Retry-After: 30 cools the provider; B holds the same cooldown.
        assert await ask(a, "call limited 1") == ["error:rate_limit"]
        cooled = await until(b, "health limited", lambda h: h["cooling_down_s"] > 0)
        assert 20 < cooled["cooling_down_s"] <= 30
        assert cooled["cooldown_cause"] == "rate_limit"
        assert await ask(b, "call limited 2") == ["rejected:cooling_down"] * 2
        assert calls["limited"] == 1

        # C starts after both: the store's snapshot tells it at once.
        async with worker(state, url) as c:
            await until(c, "health failing", lambda h: h["breaker"] == "open")
            await until(c, "health limited", lambda h: h["cooling_down_s"] > 20)
            assert await ask(c, "call failing 1") == ["rejected:breaker_open"]
            assert await ask(c, "call limited 1") == ["rejected:cooling_down"]
        assert calls["failing"] == 4
        assert calls["limited"] == 1
        assert calls["probes"] == 0  # nothing but the test's calls reached the upstream


async def test_a_breaker_and_a_cooldown_hold_in_every_process_sharing_a_sqlite_file(tmp_path: Path) -> None:
    await fleet_shares_breakers_and_cooldowns(str(tmp_path / "state.sqlite"))


async def test_a_breaker_and_a_cooldown_hold_in_every_process_sharing_a_redis_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        await fleet_shares_breakers_and_cooldowns(server.url)


async def wait_for(holds: Callable[[], bool]) -> None:
    with anyio.fail_after(DEADLINE_S):
        while not holds():
            await anyio.sleep(0.01)  # a poll step, bounded by the deadline above


async def test_a_redis_outage_is_logged_once_and_the_last_signal_is_told_when_it_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="interlock.signals")
    clock = RealClock()
    with RedisServer(tmp_path / "redis") as server:
        where = parse_store_url(server.url, key="state.url", allowed=("redis",))
        async with share_signals(where, clock, refresh_s=0.02, timeout_s=0.2) as shared:
            state = shared.provider_state("p")
            await anyio.to_thread.run_sync(server.stop)
            until_s = clock.now() + 30
            assert state.share is not None
            state.share(cooldown_signal("p", until_s, ErrorClass.RATE_LIMIT, clock.now(), clock.wall()))
            await wait_for(lambda: shared.outage is not None)
            for _ in range(5):  # many failed reads and writes later: still one line
                await shared.read_once()
            down = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(down) == 1
            assert "breakers and cooldowns are this process's own" in down[0].getMessage()

            await anyio.to_thread.run_sync(server.start)
            await wait_for(lambda: shared.outage is None and not shared.pending)
            assert len([r for r in caplog.records if "is back" in r.getMessage()]) == 1

        # A peer that opens now learns the cooldown written after the outage.
        async with open_signals(where) as store:
            signals, _ = await store.changes("", 0.0)
        assert [(s.provider, s.kind, s.cause) for s in signals] == [("p", "cooldown", "rate_limit")]
        assert signals[0].until == pytest.approx(clock.wall() + (until_s - clock.now()), abs=1.0)
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


async def test_a_password_in_the_redis_url_is_used_and_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="interlock.signals")
    secret = "s3cret-" + "x" * 12
    with RedisServer(tmp_path / "redis", "--requirepass", secret) as server:
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        where = parse_store_url(url, key="$INTERLOCK_STATE_URL", allowed=("redis",), from_env=True)
        async with open_signals(where) as store:
            await store.publish(ProviderSignal(provider="p", kind="cooldown", origin="o", at=1.0, until=2.0))
            assert [s.origin for s in (await store.changes("", 0.0))[0]] == ["o"]  # authenticated
            assert secret not in repr(store)
            await anyio.to_thread.run_sync(server.stop)
            shared = SharedSignals(store, RealClock())
            assert await shared.read_once() == 0
            failed = shared.outage
    assert isinstance(failed, SignalsStoreError)
    assert "***" in str(failed)
    assert secret not in str(failed)
    assert caplog.records
    assert all(secret not in record.getMessage() for record in caplog.records)


async def test_an_error_in_the_block_leaves_share_signals_as_it_was_raised(tmp_path: Path) -> None:
    where = parse_store_url(str(tmp_path / "state.sqlite"), key="state.path", allowed=("sqlite",))
    with pytest.raises(KeyError, match="the door's own error"):
        async with share_signals(where, RealClock()):
            raise KeyError("the door's own error")  # not wrapped in an exception group by the signal tasks

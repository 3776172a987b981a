"""The merge rules of a fleet's breakers and cooldowns, the SQLite signals store, and the hot path's silence.

Pure rules first (``policies._breaker_fleet``, ``merge_cooldown``), with a property: a peer's open
never shortens an open here, and whatever arrives, the later open-until wins. Then the SQLite
store (its own tables and version table, cursors in commit order) and ``SharedSignals``
(each peer signal delivered once, its own never). Last, a provider actor under real calls:
admissions make no store call, only a transition does.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlock import ChildSpec, FakeClock, Runtime
from interlock._errors import AdmissionRejected, ErrorClass, ProviderError
from interlock._types import ChatRequest, Finish, Message, TextDelta
from interlock.actors._provider_actor import Call, ProviderActor, ProviderSettings
from interlock.actors._shared_signals import SharedSignals
from interlock.adapters.stores._signals import ProviderSignal
from interlock.adapters.stores._signals_sqlite import SqliteProviderSignals
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.policies._breaker import BreakerConfig, BreakerState, CallOutcome, admit, record
from interlock.policies._breaker_fleet import PEER_OPENED, adopt_close, adopt_open, is_own
from interlock.policies._health import merge_cooldown

CFG = BreakerConfig(window_calls=4, min_calls=2, open_wait_s=10)
FRESH = BreakerState()


def opened(now: float = 0.0) -> BreakerState:
    state, _ = admit(FRESH, now, CFG)
    for _ in range(2):
        state = record(state, CallOutcome(error=ErrorClass.SERVER_ERROR, epoch=state.epoch), now, CFG)
    assert state.name == "open"
    return state


def open_until(state: BreakerState) -> float:
    return state.opened_at + state.wait_s if state.name == "open" else -math.inf


def test_a_peers_open_opens_a_closed_breaker_until_its_instant_and_is_not_told_on() -> None:
    state = adopt_open(FRESH, opened_at=95.0, until=125.0, trips=2, now=100.0, cfg=CFG)
    assert (state.name, open_until(state), state.trips) == ("open", 125.0, 2)
    assert state.recent[-1].reason == PEER_OPENED
    assert not is_own(state.recent[-1])
    assert admit(state, 124.9, CFG)[1].allowed is False
    assert admit(state, 125.0, CFG)[0].name == "half_open"  # then this process's own trials decide


def test_the_later_open_until_wins_and_a_passed_one_changes_nothing() -> None:
    own = opened(100.0)  # open until 110
    assert adopt_open(own, opened_at=99.0, until=105.0, trips=1, now=101.0, cfg=CFG) is own
    longer = adopt_open(own, opened_at=100.5, until=140.0, trips=1, now=101.0, cfg=CFG)
    assert open_until(longer) == 140.0
    assert longer.transitions == own.transitions
    assert adopt_open(FRESH, opened_at=0.0, until=50.0, trips=1, now=100.0, cfg=CFG) == FRESH


def test_a_peers_open_ends_a_half_open_and_its_trials_speak_for_a_gone_epoch() -> None:
    half, trial = admit(opened(0.0), 10.0, CFG)
    assert half.name == "half_open"
    assert trial.probe
    state = adopt_open(half, opened_at=10.0, until=40.0, trips=1, now=10.5, cfg=CFG)
    assert state.name == "open"
    assert record(state, CallOutcome(epoch=trial.epoch), 11.0, CFG) == state  # the trial's success is dropped


def test_a_peers_close_ends_only_an_open_taken_from_a_peer_and_only_when_later() -> None:
    taken = adopt_open(FRESH, opened_at=100.0, until=130.0, trips=1, now=100.0, cfg=CFG)
    assert adopt_close(taken, closed_at=99.0, now=101.0) is taken  # closed before it opened: old news
    closed = adopt_close(taken, closed_at=101.0, now=101.5)
    assert closed.name == "closed"
    assert closed.recent[-1].reason == "peer_closed"
    assert not is_own(closed.recent[-1])
    own = opened(100.0)
    assert adopt_close(own, closed_at=105.0, now=105.0) is own  # our own failures are not outvoted


def test_the_later_cooldown_wins_with_its_cause() -> None:
    assert merge_cooldown(10.0, ErrorClass.RATE_LIMIT, 300.0, ErrorClass.QUOTA) == (300.0, ErrorClass.QUOTA)
    assert merge_cooldown(300.0, ErrorClass.QUOTA, 10.0, ErrorClass.RATE_LIMIT) == (300.0, ErrorClass.QUOTA)
    assert merge_cooldown(-math.inf, None, 5.0, ErrorClass.RATE_LIMIT) == (5.0, ErrorClass.RATE_LIMIT)


peer_opens = st.lists(st.tuples(st.floats(0, 50), st.floats(0, 400), st.integers(1, 5)), min_size=1, max_size=12)


@given(peer_opens, st.booleans())
def test_whatever_peers_tell_the_latest_open_until_holds_and_none_is_shortened(
    opens: list[tuple[float, float, int]], start_open: bool
) -> None:
    now = 100.0
    state = opened(95.0) if start_open else FRESH
    best = open_until(state) if open_until(state) > now else -math.inf
    for ago, lasts, trips in opens:
        before = open_until(state)
        state = adopt_open(state, opened_at=now - ago, until=now - ago + lasts, trips=trips, now=now, cfg=CFG)
        assert open_until(state) >= before or before <= now
        if now - ago + lasts > now:
            best = max(best, now - ago + lasts)
    if best > now:
        assert state.name == "open"
        assert open_until(state) == pytest.approx(best)
    else:
        assert state.name == ("open" if start_open else "closed")


# -- the SQLite store ------------------------------------------------------------------------------


def signal(provider: str = "p", origin: str = "a", at: float = 1000.0, **kw: Any) -> ProviderSignal:
    fields: dict[str, Any] = {"kind": "breaker", "state": "open", "until": at + 30, "trips": 1, "cause": "failure_rate"}
    fields.update(kw)
    return ProviderSignal(provider=provider, origin=origin, at=at, **fields)


@pytest.mark.anyio
async def test_sqlite_signals_keep_the_latest_per_origin_and_hand_out_each_write_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    async with SqliteStateStore(path), SqliteProviderSignals(path) as a, SqliteProviderSignals(path) as b:
        await a.publish(signal(origin="a", at=1.0))
        await a.publish(signal(origin="a", at=2.0, state="closed", until=0.0))  # replaces a's breaker word
        await b.publish(signal(origin="b", at=3.0, kind="cooldown", state=None, cause="rate_limit"))
        snapshot, cursor = await b.changes("", 0.0)
        assert [(s.origin, s.kind, s.state, s.at) for s in snapshot] == [
            ("a", "breaker", "closed", 2.0), ("b", "cooldown", None, 3.0),
        ]  # fmt: skip
        assert (await b.changes(cursor, 0.0))[0] == []
        await a.publish(signal(origin="a", at=4.0))
        later, _ = await b.changes(cursor, 0.0)
        assert [(s.origin, s.at) for s in later] == [("a", 4.0)]
        await b.publish(signal(origin="gone", at=1.0, state="closed", until=0.0))
        assert await a.purge(before=3.5) == 1  # only the word whose instants have all passed goes
        assert {s.origin for s in (await b.changes("", 0.0))[0]} == {"a", "b"}
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (version,) = conn.execute("SELECT MAX(version) FROM signals_schema_version").fetchone()
    assert {"provider_signals", "signals_schema_version", "state_schema_version"} <= tables
    assert version == 1


@pytest.mark.anyio
async def test_shared_signals_deliver_each_peer_signal_once_and_never_their_own(tmp_path: Path) -> None:
    async with SqliteProviderSignals(tmp_path / "s.sqlite") as store:
        shared = SharedSignals(store, FakeClock(), origin="me")
        early = signal(origin="peer", at=5.0)
        assert shared.deliver([early, signal(origin="me", at=6.0)]) == 0  # nobody registered yet: kept
        state = shared.provider_state("p")
        assert list(state.inbox) == [early]  # a provider registered later gets what was heard
        state.inbox.clear()
        assert shared.deliver([early]) == 0  # heard before (a snapshot and its stream overlap)
        assert shared.deliver([signal(origin="peer", at=7.0)]) == 1
        assert shared.deliver([signal(origin="me", at=8.0)]) == 0


# -- the hot path makes no store call --------------------------------------------------------------


class CountingStore:
    """A boundary spy around the real SQLite store: counts each call the shared signals make."""

    def __init__(self, inner: SqliteProviderSignals) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {"publish": 0, "changes": 0, "purge": 0}
        self.pushes = inner.pushes
        self.shown = inner.shown

    async def publish(self, signal: ProviderSignal) -> None:
        self.calls["publish"] += 1
        await self.inner.publish(signal)

    async def purge(self, before: float) -> int:
        self.calls["purge"] += 1
        return await self.inner.purge(before)

    async def changes(self, cursor: str, wait_s: float) -> tuple[Sequence[ProviderSignal], str]:
        self.calls["changes"] += 1
        return await self.inner.changes(cursor, wait_s)


class Answering:
    """A boundary fake adapter: answers every call, or fails each with a 500 once ``failing`` is set."""

    batches = None
    name = "fake"
    failing = False

    async def stream(self, request: ChatRequest, model_id: str, *, stream: bool = True) -> AsyncIterator[Any]:
        if self.failing:
            raise ProviderError(ErrorClass.SERVER_ERROR, "p", status=500)
        yield TextDelta("hi")
        yield Finish("stop")

    async def probe(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def read(ref: Any, request: ChatRequest) -> list[Any]:
    return [event async for event in await ref.ask_stream(Call(request, "m"))]


@pytest.mark.anyio
async def test_admissions_make_no_store_call_and_a_transition_makes_one_write(tmp_path: Path) -> None:
    request = ChatRequest(messages=(Message.text("user", "hi"),))
    async with SqliteProviderSignals(tmp_path / "s.sqlite") as inner:
        store = CountingStore(inner)
        shared = SharedSignals(store, FakeClock(), refresh_s=3600)  # its reader sleeps on a clock that stands still
        adapter = Answering()
        settings = ProviderSettings(breaker=CFG, probe_loop=False)
        state = shared.provider_state("p")
        async with anyio.create_task_group() as tg, Runtime() as rt:
            tg.start_soon(shared.run)
            spec = ChildSpec("provider:p", lambda: ProviderActor("p", lambda: adapter, settings, None, state))
            await rt.spawn_supervisor("providers", [spec])
            ref = rt.lookup("provider:p")
            with anyio.fail_after(10):
                while store.calls["changes"] == 0:  # the reader's first read: the snapshot
                    await anyio.sleep(0.001)
            before = dict(store.calls)
            for _ in range(200):
                assert [type(e) for e in await read(ref, request)] == [TextDelta, Finish]
            assert store.calls == before  # 200 admissions and answers, no store call
            adapter.failing = True
            for _ in range(2):
                with pytest.raises(ProviderError):
                    await read(ref, request)
            for _ in range(50):
                with pytest.raises(AdmissionRejected):
                    await read(ref, request)
            with anyio.fail_after(10):
                while store.calls["publish"] == 0:
                    await anyio.sleep(0.001)
            assert store.calls == {**before, "publish": 1}  # the open, written once; 50 refusals cost nothing
            tg.cancel_scope.cancel()

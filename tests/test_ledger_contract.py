"""One contract for every ledger store, run against SQLite and a real PostgreSQL server alike.

Each test gets a fresh ledger: a new SQLite file, or a new database on the module's PostgreSQL
server (``tests/pg_server.py``). Dead sessions are real: a child process opens the store,
begins requests and is SIGKILLed; the next store to open closes its requests as ``interrupted``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from pg_server import PgServer, running_pg

from interlock._records import AttemptRecord, BeginRecord, BreakerRecord, RequestRecord
from interlock.adapters.stores._ledger_open import open_ledger_store
from interlock.adapters.stores._ledger_schema import SCHEMA_VERSION as SQLITE_VERSION
from interlock.adapters.stores._ledger_schema import LedgerSchemaTooNew, LedgerStoreError
from interlock.adapters.stores._ledger_store import LedgerStore
from interlock.adapters.stores._pg_rows import missing_ddl, pg_columns
from interlock.adapters.stores._pg_schema import SCHEMA_VERSION as PG_VERSION
from interlock.policies._store_url import LEDGER_KINDS, parse_store_url

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    """One PostgreSQL server for the module's tests (each test gets its own database)."""
    with running_pg() as server:
        yield server


class Ledger:
    """A fresh ledger of one kind: ``where`` to open it, ``raw`` to look at it behind the store's back."""

    def __init__(self, kind: str, where: str, spool: Path) -> None:
        self.kind = kind
        self.where = where
        self.spool = spool

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Any]:
        """The store, open for the block."""
        url = parse_store_url(self.where, key="ledger", allowed=LEDGER_KINDS, from_env=True)
        async with open_ledger_store(url, spool=self.spool) as store:
            yield store

    def raw(self, query: str) -> list[tuple[Any, ...]]:
        """Run one statement directly on the ledger's database; its rows."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.where, isolation_level=None)
            try:
                return conn.execute(query).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.where, autocommit=True) as pg_conn:
            cur = pg_conn.execute(query)
            return cur.fetchall() if cur.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh, empty ledger of each kind."""
    if request.param == "sqlite":
        return Ledger("sqlite", str(tmp_path / "ledger.db"), tmp_path / "spool")
    server: PgServer = request.getfixturevalue("pg")
    return Ledger("postgresql", server.fresh_database(), tmp_path / "spool")


def request_row(request_id: str, **changes: object) -> RequestRecord:
    """A request record whose every field differs from its default."""
    record = RequestRecord(
        request_id=request_id, ts=T0 + 1.25, tenant="acme", caller="billing", task="summarize",
        model_class="fast", model="gpt-mini", provider="openai", outcome="error", input_tokens=1200,
        output_tokens=345, cache_read_tokens=800, cache_write_tokens=64, cost_cents=0.0123, ttft_ms=210.5,
        ttlt_ms=1800.25, error="rate_limit", error_detail="429", degraded=True, degraded_reason="fallback",
        hedged=True, attempts=3, cache_hit=True, verdict="pass", route_label="billing", route_detail="{}",
        first_choice="flagship", served_model="gpt-mini-2024", skipped="[]", usage_estimated=True,
        aux_cost_cents=0.001, operation="embed", pii_detected="email",
    )  # fmt: skip
    return msgspec.structs.replace(record, **changes)


def attempt_row(request_id: str, attempt: int, **changes: object) -> AttemptRecord:
    """An attempt record whose every field differs from its default."""
    record = AttemptRecord(
        request_id=request_id, attempt=attempt, ts=T0 + 0.5, tenant="acme", caller="billing", task="summarize",
        model_class="smart", model="sonnet", provider="anthropic", outcome="cancelled", input_tokens=1000,
        output_tokens=12, cache_read_tokens=500, cache_write_tokens=32, cost_cents=0.5, ttft_ms=99.0,
        ttlt_ms=150.0, error="cancelled", error_detail="hedge lost", status=499, finish_reason="stop", hedge=True,
        cancel_reason="hedge_lost", cache_hit=True, verdict="fail", start_ms=12.5, duration_ms=340.25,
        usage_estimated=True, skipped_events=3, purpose="review", served_model="sonnet-1", provider_finish_reason="x",
        operation="chat", batch_id="b-1",
    )  # fmt: skip
    return msgspec.structs.replace(record, **changes)


def plain(n: int, prefix: str = "r") -> list[RequestRecord]:
    """``n`` minimal request records with distinct, time-ordered ids."""
    return [
        RequestRecord(request_id=f"{prefix}-{i:04d}", ts=T0 + i, tenant="t", caller="c", task="x") for i in range(n)
    ]


def begin(request_id: str, attempts: int = 0, model: str = "") -> BeginRecord:
    return BeginRecord(request_id=request_id, ts=T0, tenant="acme", caller="svc", task="summarize",
                       attempts=attempts, model=model, provider=f"{model}-p" if model else "")  # fmt: skip


async def test_every_field_round_trips(ledger: Ledger) -> None:
    """Request and attempt records come back equal field for field, None and bools included."""
    sparse = RequestRecord(request_id="r-2", ts=T0 + 2, tenant="t", caller="c", task="x")
    sparse_attempt = AttemptRecord(request_id="r-2", attempt=0, ts=T0 + 2, tenant="t", caller="c", task="x",
                                   model_class="m", model="m", provider="p", outcome="ok")  # fmt: skip
    async with ledger.open() as store:
        await store.write([request_row("r-1"), attempt_row("r-1", 2), sparse, sparse_attempt])
        assert await store.fetch_requests() == [request_row("r-1"), sparse]
        assert await store.fetch_attempts() == [attempt_row("r-1", 2), sparse_attempt]


async def test_a_replayed_batch_adds_nothing_and_the_first_copy_stays(ledger: Ledger) -> None:
    """The same batch written again (alone, inside a larger one, after a reopen) adds no row; a later copy loses."""
    batch = [*plain(10), attempt_row("r-0000", 0), attempt_row("r-0000", 1)]
    async with ledger.open() as store:
        await store.write(batch)
        await store.write(batch)
    async with ledger.open() as store:
        await store.write([*batch, *plain(3, prefix="new"), request_row("r-0000", cost_cents=99.0)])
        assert (await store.count_requests(), len(await store.fetch_attempts())) == (13, 2)
        assert [r.cost_cents for r in await store.fetch_requests() if r.request_id == "r-0000"] == [0.0]


async def test_batches_of_many_sizes_store_each_record_once(ledger: Ledger) -> None:
    """Batches from 1 to 3,000 records, some repeated, land once each."""
    async with ledger.open() as store:
        total = 0
        for size in (1, 23, 24, 25, 1024, 3000):
            batch = plain(size, prefix=f"s{size}")
            await store.write(batch)
            await store.write(batch[: size // 2 + 1])
            total += size
        assert await store.count_requests() == total


async def test_fetches_filter_by_since_task_and_tenant_oldest_first(ledger: Ledger) -> None:
    """Each filter, and all of them at once, select exactly the matching records, in time order."""
    shapes = [("a", "x"), ("b", "x"), ("a", "y"), ("a", "x"), ("b", "y")]
    records = [request_row(f"r{i}", ts=T0 + 10 - i, task=t, tenant=n) for i, (t, n) in enumerate(shapes)]
    attempts = [attempt_row(f"r{i}", 0, ts=T0 + 10 - i, task=t, tenant=n) for i, (t, n) in enumerate(shapes)]
    async with ledger.open() as store:
        await store.write([*records, *attempts])
        assert [r.request_id for r in await store.fetch_requests()] == ["r4", "r3", "r2", "r1", "r0"]
        assert [r.request_id for r in await store.fetch_requests(task="a")] == ["r3", "r2", "r0"]
        assert [r.request_id for r in await store.fetch_requests(tenant="y")] == ["r4", "r2"]
        assert [r.request_id for r in await store.fetch_requests(since=T0 + 8)] == ["r2", "r1", "r0"]
        assert [r.request_id for r in await store.fetch_requests(T0 + 7, "a", "x")] == ["r3", "r0"]
        assert [a.request_id for a in await store.fetch_attempts(T0 + 7, "a", "x")] == ["r3", "r0"]


async def test_counts_and_breaker_transitions(ledger: Ledger) -> None:
    """Counts of requests, attempts and begun rows; breaker transitions once each, newest first, bounded."""
    changes = [BreakerRecord(ts=T0 + i, provider=p, from_state=a, to_state=b, cause="c")
               for i, (p, a, b) in enumerate([("openai", "closed", "open"), ("anthropic", "closed", "open"),
                                              ("openai", "open", "half_open")])]  # fmt: skip
    async with ledger.open() as store:
        await store.write([*changes, *plain(4), attempt_row("r-0000", 0), begin("open-1"), begin("open-2")])
        await store.write(changes[:2])
        assert (await store.count_requests(), await store.count_attempts(), await store.count_begun()) == (4, 1, 2)
        assert await store.breaker_transitions() == changes[::-1]
        assert await store.breaker_transitions(limit=2) == changes[:0:-1]


async def test_a_begun_row_keeps_the_most_attempts_and_its_end_removes_it(ledger: Ledger) -> None:
    """Later begins raise a begun row's count (never lower it); a begin batched with its end is never written."""
    async with ledger.open() as store:
        await store.write([begin("r-1"), begin("r-1", 1, "m1"), begin("r-2")])
        await store.write([begin("r-1", 3, "m3")])
        await store.write([begin("r-1", 2, "m2"), begin("r-3"), begin("r-3", 1, "m1"), request_row("r-3")])
        assert ledger.raw("SELECT request_id, attempts, model FROM begun ORDER BY request_id") == [
            ("r-1", 3, "m3"), ("r-2", 0, ""),
        ]  # fmt: skip
        await store.write([request_row("r-2"), request_row("r-1")])
        assert await store.count_begun() == 0


def kill_after_ready(ledger: Ledger) -> None:
    """Run the session worker on ``ledger`` until it has begun its requests, then SIGKILL it."""
    argv = [sys.executable, str(HERE / "ledger_session_worker.py"), ledger.where, str(ledger.spool), "3"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        try:
            readable, _, _ = select.select([child.stdout], [], [], 30.0)  # the deadline for its first line
            line = child.stdout.readline() if readable else "no line within 30 s"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            _, err = child.communicate(timeout=30)
        assert line.strip() == "ready", err


async def test_a_killed_process_leaves_one_interrupted_row_per_begun_request(ledger: Ledger) -> None:
    """SIGKILL a process holding begun requests: the next open closes each as interrupted, once, with what it knew."""
    async with ledger.open() as live:  # a live session's begun row must survive the recovery
        await live.write([begin("live-1")])
        await anyio.to_thread.run_sync(kill_after_ready, ledger)
        assert await live.count_begun() == 4  # the child's three, and the live one
        async with ledger.open() as store:
            assert store.recovered == 3
            closed = {r.request_id: r for r in await store.fetch_requests() if r.outcome == "interrupted"}
            assert sorted(closed) == ["k-0", "k-1", "k-2"]
            k0 = closed["k-0"]
            assert (k0.attempts, k0.task, k0.model, k0.provider, k0.tenant) == (2, "t2", "m2", "p2", "acme")
            assert closed["k-2"].attempts == 0
            assert await store.count_begun() == 1  # the live session's
        async with ledger.open() as again:
            assert again.recovered == 0  # nothing twice
            assert await again.count_requests() == 4  # k-0..k-2 and k-done
    async with ledger.open() as after:
        assert await after.count_begun() == 0  # the live store closed its own on close
        assert [r.outcome for r in await after.fetch_requests() if r.request_id == "live-1"] == ["interrupted"]


async def test_writers_at_once_lose_nothing(ledger: Ledger) -> None:
    """Eight tasks over two stores write batches at once: every row lands once."""

    async def writer(store: LedgerStore, name: str) -> None:
        for b in range(5):
            batch = plain(120, prefix=f"{name}-{b}")
            await store.write([*batch, *(attempt_row(r.request_id, 0) for r in batch)])

    async with ledger.open() as one, ledger.open() as two, anyio.create_task_group() as tg:
        for w in range(8):
            tg.start_soon(writer, one if w % 2 else two, f"w{w}")
    async with ledger.open() as store:
        assert (await store.count_requests(), await store.count_attempts()) == (8 * 5 * 120, 8 * 5 * 120)


async def test_a_stray_object_fails_the_whole_batch(ledger: Ledger) -> None:
    """A non-record in a batch is a LedgerStoreError naming it; nothing of that batch lands; the store goes on."""
    async with ledger.open() as store:
        with pytest.raises(LedgerStoreError, match="not a ledger record: dict"):
            await store.write([*plain(3), {"request_id": "x"}])
        await store.write(plain(2, prefix="after"))
        assert await store.count_requests() == 2


async def test_a_newer_schema_is_refused(ledger: Ledger) -> None:
    """A ledger written by a newer interlock is refused with both versions named."""
    async with ledger.open():
        pass
    supported = SQLITE_VERSION if ledger.kind == "sqlite" else PG_VERSION
    ledger.raw(f"INSERT INTO schema_version (version, summary) VALUES ({supported + 1}, 'from the future')")
    with pytest.raises(LedgerSchemaTooNew) as caught:
        async with ledger.open():
            pass
    assert (caught.value.found, caught.value.supported) == (supported + 1, supported)


def test_the_postgresql_schema_holds_one_typed_column_per_record_field(pg: PgServer) -> None:
    """After every migration each table's columns are its record's fields, typed as ``pg_columns`` derives them."""
    url = pg.fresh_database()

    async def open_once() -> None:
        async with open_ledger_store(parse_store_url(url, key="l", allowed=LEDGER_KINDS, from_env=True), spool=None):
            pass

    anyio.run(open_once)
    session = (("session", "text", False),)
    tables = (("requests", RequestRecord, ()), ("attempts", AttemptRecord, ()), ("begun", BeginRecord, session),
              ("breaker_transitions", BreakerRecord, ()))  # fmt: skip
    with psycopg.connect(url) as conn:
        for table, kind, extra in tables:
            rows = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
                " WHERE table_name = %s AND table_schema = 'public' ORDER BY ordinal_position", (table,),
            ).fetchall()  # fmt: skip
            found = {str(n): (str(t), bool(null)) for n, t, null in rows}
            assert not missing_ddl(table, kind, found), (
                f"append a migration to _pg_schema: {missing_ddl(table, kind, found)}"
            )
            expected = {n: (t, null) for n, t, null in (*pg_columns(kind), *extra)}
            assert found == expected

"""The SQLite ledger store on real files: schema migrations, round trips, replay, concurrency, filters."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import msgspec
import pytest

from interlock._records import AttemptRecord, BeginRecord, BreakerRecord, RequestRecord
from interlock.adapters.stores._ledger_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    LedgerSchemaTooNew,
    LedgerStoreError,
    migrate,
)
from interlock.adapters.stores._ledger_store import (
    ROWS_PER_INSERT,
    LedgerStore,
    SqliteLedgerStore,
    _attempt_row,
    _request_row,
)
from interlock.adapters.stores._ledger_writer import WRITE_LOCK

T0 = 1_700_000_000.0


def full_request(request_id: str = "r-1", **changes: object) -> RequestRecord:
    """A request record whose every field differs from its default."""
    record = RequestRecord(
        request_id=request_id,
        ts=T0 + 1.25,
        tenant="acme",
        caller="billing-svc",
        task="summarize",
        model_class="fast",
        model="gpt-4o-mini",
        provider="openai",
        outcome="error",
        input_tokens=1200,
        output_tokens=345,
        cache_read_tokens=800,
        cache_write_tokens=64,
        cost_cents=0.0123,
        ttft_ms=210.5,
        ttlt_ms=1800.25,
        error="rate_limit",
        error_detail="429 from upstream",
        degraded=True,
        degraded_reason="fallback: primary rate limited",
        hedged=True,
        attempts=3,
        cache_hit=True,
        verdict="pass",
        route_label="billing",
        route_detail='{"chain": ["flagship"]}',
    )
    return msgspec.structs.replace(record, **changes)


def full_attempt(request_id: str = "r-1", attempt: int = 2, **changes: object) -> AttemptRecord:
    """An attempt record whose every field differs from its default."""
    record = AttemptRecord(
        request_id=request_id,
        attempt=attempt,
        ts=T0 + 0.5,
        tenant="acme",
        caller="billing-svc",
        task="summarize",
        model_class="smart",
        model="claude-sonnet",
        provider="anthropic",
        outcome="cancelled",
        input_tokens=1000,
        output_tokens=12,
        cache_read_tokens=500,
        cache_write_tokens=32,
        cost_cents=0.5,
        ttft_ms=99.0,
        ttlt_ms=150.0,
        error="cancelled",
        error_detail="hedge lost",
        status=499,
        finish_reason="stop",
        hedge=True,
        cancel_reason="hedge_lost",
        cache_hit=True,
        verdict="fail",
        start_ms=12.5,
        duration_ms=340.25,
        usage_estimated=True,
        skipped_events=3,
    )
    return msgspec.structs.replace(record, **changes)


def requests(n: int, prefix: str = "r", **changes: object) -> list[RequestRecord]:
    """``n`` minimal request records with distinct ids."""
    base = RequestRecord(request_id="", ts=T0, tenant="t", caller="c", task="x")
    return [msgspec.structs.replace(base, request_id=f"{prefix}-{i}", ts=T0 + i, **changes) for i in range(n)]


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Run one statement on the file through a plain sqlite3 connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.anyio
async def test_open_creates_schema_from_empty(tmp_path: Path) -> None:
    """Opening a new file applies every migration in order and records each in schema_version."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as store:
        assert await store.count_requests() == 0
    versions = raw(path, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(m.version,) for m in MIGRATIONS]
    assert versions[-1] == (SCHEMA_VERSION,)
    indexes = {row[0] for row in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    # The time index alone: every further index costs each write a b-tree insert (migrations 12, 13).
    assert {i for i in indexes if not i.startswith("sqlite_autoindex")} == {
        "requests_ts", "attempts_ts", "breaker_transitions_ts",
    }  # fmt: skip


def test_table_columns_mirror_record_fields(tmp_path: Path) -> None:
    """Each table has exactly one column per field of its record, and no blob column for metadata.

    ``begun`` has ``session`` after the fields of version 6; the fields added by version 8 follow it.
    """
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    conn.close()
    tables = (("requests", RequestRecord, ()), ("attempts", AttemptRecord, ()), ("begun", BeginRecord, ("session",)),
              ("breaker_transitions", BreakerRecord, ()))  # fmt: skip
    for table, kind, extra in tables:
        columns = [row[1] for row in raw(path, f"PRAGMA table_info({table})")]
        fields = [f.name for f in msgspec.structs.fields(kind)]
        split = 5 if table == "begun" else len(fields)
        assert columns == [*fields[:split], *extra, *fields[split:]]
        assert all(row[2] != "BLOB" for row in raw(path, f"PRAGMA table_info({table})"))


@pytest.mark.anyio
async def test_wal_mode_is_set(tmp_path: Path) -> None:
    """The file is in WAL journal mode after the store opens it."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path):
        pass
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.anyio
async def test_reopen_keeps_data(tmp_path: Path) -> None:
    """Records written before a close are there after reopening, and migrations are not re-applied."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as store:
        await store.write(requests(5))
    async with SqliteLedgerStore(path) as store:
        assert await store.count_requests() == 5
    assert raw(path, "SELECT COUNT(*) FROM schema_version") == [(len(MIGRATIONS),)]


@pytest.mark.anyio
async def test_older_file_is_upgraded(tmp_path: Path) -> None:
    """A file at schema version 1 is migrated to the current version on open and keeps its rows."""
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), upto=1) == 1
    v1_fields = msgspec.structs.astuple(full_request())[:24]  # the version-1 columns
    conn.execute("INSERT INTO requests VALUES (" + ", ".join("?" * 24) + ")", v1_fields)
    conn.close()
    async with SqliteLedgerStore(path) as store:
        # Columns added later read back as their defaults.
        upgraded = msgspec.structs.replace(full_request(), route_label=None, route_detail="")
        assert await store.fetch_requests() == [upgraded]
    assert raw(path, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert raw(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'requests_ts'") == [(1,)]


@pytest.mark.anyio
async def test_newer_file_is_refused(tmp_path: Path) -> None:
    """A file written by a newer schema raises LedgerSchemaTooNew naming both versions."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path):
        pass
    raw(path, f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1}, 'from the future')")
    with pytest.raises(LedgerSchemaTooNew) as caught:
        await SqliteLedgerStore(path).open()
    assert (caught.value.found, caught.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert str(path) in str(caught.value)


@pytest.mark.anyio
async def test_not_a_database_is_a_typed_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises LedgerStoreError, not a raw sqlite3 error."""
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database file, just some text " * 100)
    with pytest.raises(LedgerStoreError, match="cannot open"):
        await SqliteLedgerStore(path).open()


@pytest.mark.anyio
async def test_round_trip_every_field(tmp_path: Path) -> None:
    """Both record kinds come back equal field for field, including None and bool fields."""
    sparse_request = RequestRecord(request_id="r-2", ts=T0 + 2, tenant="t", caller="c", task="x")
    sparse_attempt = AttemptRecord(
        request_id="r-2", attempt=0, ts=T0 + 2, tenant="t", caller="c", task="x", model_class="m",
        model="m", provider="p", outcome="ok",
    )  # fmt: skip
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write([full_request(), full_attempt(), sparse_request, sparse_attempt])
        assert await store.fetch_requests() == [full_request(), sparse_request]
        assert await store.fetch_attempts() == [full_attempt(), sparse_attempt]


@pytest.mark.anyio
async def test_replay_is_idempotent(tmp_path: Path) -> None:
    """Writing the same records again, alone or inside a larger batch, adds no rows; the first copy stays."""
    batch: list[AttemptRecord | RequestRecord] = [*requests(10), full_attempt("r-0", 0), full_attempt("r-0", 1)]
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write(batch)
        await store.write(batch)
        await store.write([*batch, *requests(3, prefix="new"), full_request("r-0", cost_cents=99.0)])
        assert await store.count_requests() == 13
        assert len(await store.fetch_attempts()) == 2
        first = [r for r in await store.fetch_requests() if r.request_id == "r-0"]
        assert [r.cost_cents for r in first] == [0.0]


@pytest.mark.anyio
async def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Eight tasks writing batches at once through one store, plus a second store on the file, lose no row."""
    path = tmp_path / "ledger.db"

    async def writer(store: SqliteLedgerStore, name: str) -> None:
        for b in range(10):
            batch = requests(150, prefix=f"{name}-{b}")
            await store.write([*batch, *(full_attempt(r.request_id, 0) for r in batch)])

    async with SqliteLedgerStore(path) as one, SqliteLedgerStore(path) as two, anyio.create_task_group() as tg:
        for w in range(8):
            tg.start_soon(writer, one if w % 2 else two, f"w{w}")
    async with SqliteLedgerStore(path) as store:
        assert await store.count_requests() == 8 * 10 * 150
        assert await store.count_attempts() == 8 * 10 * 150


@pytest.mark.anyio
async def test_filters_by_since_task_and_tenant(tmp_path: Path) -> None:
    """fetch_* return only records matching every given filter, oldest first."""
    records: list[AttemptRecord | RequestRecord] = []
    for i, (task, tenant) in enumerate([("a", "x"), ("b", "x"), ("a", "y"), ("a", "x"), ("b", "y")]):
        records.append(full_request(f"r{i}", ts=T0 + i, task=task, tenant=tenant))
        records.append(full_attempt(f"r{i}", 0, ts=T0 + i, task=task, tenant=tenant))
    store: LedgerStore
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write(records[::-1])

        async def ids(since: float | None = None, task: str | None = None, tenant: str | None = None) -> list[str]:
            got = [r.request_id for r in await store.fetch_requests(since, task, tenant)]
            assert got == [a.request_id for a in await store.fetch_attempts(since, task, tenant)]
            return got

        assert await ids() == ["r0", "r1", "r2", "r3", "r4"]
        assert await ids(since=T0 + 2) == ["r2", "r3", "r4"]
        assert await ids(task="a") == ["r0", "r2", "r3"]
        assert await ids(tenant="y") == ["r2", "r4"]
        assert await ids(since=T0 + 1, task="a", tenant="x") == ["r3"]
        assert await ids(task="nope") == []


@pytest.mark.anyio
async def test_failed_batch_leaves_nothing_and_store_usable(tmp_path: Path) -> None:
    """A batch with an unbindable value raises LedgerStoreError, writes none of its rows, and later writes work."""
    bad = full_request("bad", tenant=["not", "a", "string"])
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        with pytest.raises(LedgerStoreError, match="write failed"):
            await store.write([*requests(5), bad])
        assert await store.count_requests() == 0
        await store.write(requests(5))
        assert await store.count_requests() == 5


@pytest.mark.anyio
async def test_cancelled_write_is_all_or_nothing(tmp_path: Path) -> None:
    """A write cancelled while its transaction is open stores all of its batch or none, and the store stays usable."""
    big = requests(20_000)
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store, anyio.create_task_group() as tg:
        tg.start_soon(store.write, big)
        for _ in range(10_000):  # bounded: the write takes the lock within a few scheduler turns
            if store._lock.locked():
                break
            await anyio.lowlevel.checkpoint()
        assert store._lock.locked()
        tg.cancel_scope.cancel()
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        assert await store.count_requests() in (0, len(big))
        await store.write(requests(5, prefix="after"))
        assert await store.count_requests() in (5, 5 + len(big))


@pytest.mark.anyio
async def test_closed_store_refuses_and_empty_batch_is_a_no_op(tmp_path: Path) -> None:
    """An empty batch writes nothing; any use after close raises LedgerStoreError; close twice is fine."""
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    await store.open()
    await store.write([])
    assert await store.count_requests() == 0
    await store.close()
    await store.close()
    with pytest.raises(LedgerStoreError, match="not open"):
        await store.write(requests(1))
    with pytest.raises(LedgerStoreError, match="not open"):
        await store.fetch_requests()


@pytest.mark.anyio
async def test_in_memory_path_is_refused(tmp_path: Path) -> None:
    """':memory:' is refused: the ledger must outlive the process."""
    with pytest.raises(LedgerStoreError, match="in-memory"):
        await SqliteLedgerStore(":memory:").open()


def test_row_parameters_bind_on_the_fast_path() -> None:
    """Each record becomes one value per column, all exact int, float or str: bools as 0/1, None as NaN."""
    sparse = AttemptRecord(
        request_id="r", attempt=0, ts=T0, tenant="t", caller="c", task="x", model_class="m", model="m",
        provider="p", outcome="ok",
    )  # fmt: skip
    cases = [
        (full_request(), _request_row, RequestRecord),
        (RequestRecord(request_id="r", ts=T0, tenant="t", caller="c", task="x"), _request_row, RequestRecord),
        (full_attempt(), _attempt_row, AttemptRecord),
        (sparse, _attempt_row, AttemptRecord),
    ]
    for record, build, kind in cases:
        row = build(record)
        values = msgspec.structs.astuple(record)
        assert len(row) == len(msgspec.structs.fields(kind))
        assert all(type(v) in (int, float, str) for v in row)
        for got, value in zip(row, values, strict=True):
            if value is None:
                assert math.isnan(got)  # type: ignore[arg-type]
            else:
                assert got == value


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, ROWS_PER_INSERT + 1, 2 * ROWS_PER_INSERT + 3])
async def test_batches_of_any_size_store_each_record_once(tmp_path: Path, n: int) -> None:
    """Batches that fill the multi-row statements exactly, or not, store every record once and nothing else."""
    batch: list[AttemptRecord | RequestRecord] = []
    for r in requests(n):
        batch += [r, full_attempt(r.request_id, 0, ts=r.ts), full_attempt(r.request_id, 1, ts=r.ts)]
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write(batch)
        assert await store.fetch_requests() == [r for r in batch if isinstance(r, RequestRecord)]
        assert await store.fetch_attempts() == [r for r in batch if isinstance(r, AttemptRecord)]


@pytest.mark.anyio
async def test_write_keeps_the_batch_it_was_given(tmp_path: Path) -> None:
    """The caller's list may change once write has started: the batch as passed is what gets stored."""
    batch: list[AttemptRecord | RequestRecord] = [*requests(500)]
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store, anyio.create_task_group() as tg:
        tg.start_soon(store.write, batch)
        for _ in range(10_000):  # bounded: the write takes the lock within a few scheduler turns
            if store._lock.locked():
                break
            await anyio.lowlevel.checkpoint()
        batch.clear()
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        assert await store.count_requests() == 500


@pytest.mark.anyio
async def test_first_copy_in_a_batch_wins(tmp_path: Path) -> None:
    """Two copies of a key in one batch, in the same statement or in different ones, store the first."""
    first = full_request("dup", cost_cents=1.0)
    fillers = requests(2 * ROWS_PER_INSERT)
    batch = [first, full_request("dup", cost_cents=2.0), *fillers, full_request("dup", cost_cents=3.0)]
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write(batch)
        assert [r for r in await store.fetch_requests() if r.request_id == "dup"] == [first]
        assert await store.count_requests() == 1 + len(fillers)


def begin(request_id: str, **changes: object) -> BeginRecord:
    record = BeginRecord(request_id=request_id, ts=T0, tenant="acme", caller="svc", task="summarize")
    return msgspec.structs.replace(record, **changes)


@pytest.mark.anyio
async def test_an_older_file_gains_the_attempt_flags_begun_and_breaker_tables(tmp_path: Path) -> None:
    """A file at version 4 is migrated: its attempts read back unestimated with no skipped events."""
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), upto=4) == 4
    v4 = msgspec.structs.astuple(full_attempt())[:27]
    conn.execute("INSERT INTO attempts VALUES (" + ", ".join("?" * 27) + ")", v4)
    conn.close()
    async with SqliteLedgerStore(path) as store:
        assert await store.fetch_attempts() == [full_attempt(usage_estimated=False, skipped_events=0)]
        assert await store.count_begun() == 0
        assert await store.breaker_transitions() == []


@pytest.mark.anyio
async def test_a_begin_is_kept_until_its_end_is_written_and_never_beside_it(tmp_path: Path) -> None:
    """A begun row stands while its request runs; its end deletes it; a begin batched with its end is never written."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as store:
        await store.write([begin("r-1"), begin("r-2")])
        assert raw(path, "SELECT request_id, tenant, task FROM begun ORDER BY 1") == [
            ("r-1", "acme", "summarize"), ("r-2", "acme", "summarize"),
        ]  # fmt: skip
        await store.write([full_request("r-1"), begin("r-3"), full_request("r-3")])
        assert raw(path, "SELECT request_id FROM begun") == [("r-2",)]
        assert await store.count_requests() == 2
        await store.write([full_request("r-2")])
        assert await store.count_begun() == 0


@pytest.mark.anyio
async def test_a_live_session_keeps_its_begun_requests_and_closes_them_itself(tmp_path: Path) -> None:
    """Another store opening the file leaves a live store's begun rows; closing a store ends its own as interrupted."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as first:
        await first.write([begin("r-open"), full_attempt("r-open", 0), begin("r-done"), full_request("r-done")])
        async with SqliteLedgerStore(path) as second:
            assert second.recovered == 0
            assert await second.count_begun() == 1
    async with SqliteLedgerStore(path) as store:
        assert store.recovered == 0  # nobody was dead: the first store closed its own
        (closed,) = [r for r in await store.fetch_requests() if r.request_id == "r-open"]
    assert (closed.outcome, closed.error, closed.attempts, closed.tenant, closed.task) == (
        "interrupted", "interrupted", 1, "acme", "summarize",
    )  # fmt: skip
    assert raw(path, "SELECT COUNT(*) FROM begun") == [(0,)]
    assert [p.name for p in (tmp_path / "ledger.db-sessions").iterdir()] == [WRITE_LOCK]  # no session left


def raw_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """The column names of ``table`` as the connection's schema has them."""
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


DEAD_SESSION = "0123456789abcdef"  # a session id whose lock file does not exist: no process holds it


def sent(request_id: str, attempts: int, model: str = "", **changes: object) -> BeginRecord:
    """The begin a request tells once ``attempts`` attempts are sent, the latest to ``model``."""
    return begin(request_id, attempts=attempts, task="summarize-v2", model_class="fast", model=model,
                 provider=f"{model}-provider", **changes)  # fmt: skip


@pytest.mark.anyio
async def test_a_begun_row_keeps_the_most_attempts_sent_and_is_recovered_with_them(tmp_path: Path) -> None:
    """Later begins raise a begun row's attempts (never lower them); a dead session's row closes with them."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as store:
        await store.write([begin("r-1"), sent("r-1", 1, "m1"), begin("r-2")])
        assert raw(path, "SELECT attempts, model FROM begun WHERE request_id = 'r-1'") == [(1, "m1")]
        await store.write([sent("r-1", 3, "m3")])
        await store.write([sent("r-1", 2, "m2"), sent("r-1", 3, "m-replayed")])  # stale, then a replayed count
        # Every begin and update of a request batched with its end is never written; an update
        # batched with the end of a request begun earlier goes with the begun row.
        await store.write([begin("r-3"), sent("r-3", 1, "m1"), full_request("r-3"), sent("r-2", 1, "m1"),
                           full_request("r-2")])  # fmt: skip
        assert raw(path, "SELECT request_id, attempts, task, model_class, model, provider FROM begun") == [
            ("r-1", 3, "summarize-v2", "fast", "m3", "m3-provider"),
        ]  # fmt: skip
        raw(path, f"UPDATE begun SET session = '{DEAD_SESSION}'")  # as if its process had been killed
    async with SqliteLedgerStore(path) as store:
        assert store.recovered == 1
        (closed,) = [r for r in await store.fetch_requests() if r.request_id == "r-1"]
    expected = ("interrupted", 3, "acme", "summarize-v2", "fast", "m3", "m3-provider", T0)
    assert (closed.outcome, closed.attempts, closed.tenant, closed.task, closed.model_class, closed.model,
            closed.provider, closed.ts) == expected  # fmt: skip
    assert raw(path, "SELECT COUNT(*) FROM begun") == [(0,)]


@pytest.mark.anyio
async def test_begun_updates_across_statements_of_one_batch_keep_the_latest(tmp_path: Path) -> None:
    """Begins and their updates spread over several padded statements of one batch leave one row each, updated."""
    path = tmp_path / "ledger.db"
    ids = [f"r-{i}" for i in range(ROWS_PER_INSERT + 8)]
    async with SqliteLedgerStore(path) as store:
        await store.write([*(begin(i) for i in ids), *(sent(i, 1, "m1") for i in ids)])
        assert raw(path, "SELECT COUNT(*), MIN(attempts), MAX(attempts), MIN(model) FROM begun") == [
            (len(ids), 1, 1, "m1"),
        ]  # fmt: skip
        await store.write([full_request(i) for i in ids])
        assert await store.count_begun() == 0


@pytest.mark.anyio
async def test_a_version_7_begun_row_is_migrated_and_closes_with_the_attempts_on_file(tmp_path: Path) -> None:
    """A begun row written before migration 8 counts no attempts sent; its recovery counts its attempt rows on file."""
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), upto=7) == 7
    conn.execute("INSERT INTO begun VALUES ('r-old', ?, 'acme', 'svc', 'summarize', ?)", (T0, DEAD_SESSION))
    width = len(raw_columns(conn, "attempts"))  # the columns of version 7: later fields are not there yet
    insert = f"INSERT INTO attempts VALUES ({', '.join('?' * width)})"
    conn.executemany(insert, [msgspec.structs.astuple(full_attempt("r-old", n))[:width] for n in (1, 2)])
    conn.close()
    async with SqliteLedgerStore(path) as store:
        assert store.recovered == 1
        (closed,) = await store.fetch_requests()
    assert (closed.request_id, closed.outcome, closed.attempts, closed.model, closed.task) == (
        "r-old", "interrupted", 2, "", "summarize",
    )  # fmt: skip


@pytest.mark.anyio
async def test_breaker_transitions_are_kept_once_and_read_newest_first(tmp_path: Path) -> None:
    """Breaker records round-trip; a replay adds nothing; the read is newest first and bounded by ``limit``."""
    changes = [
        BreakerRecord(ts=T0 + i, provider=p, from_state=a, to_state=b, cause=c)
        for i, (p, a, b, c) in enumerate([
            ("openai", "closed", "open", "5 failures in 30 s"), ("anthropic", "closed", "open", "timeouts"),
            ("openai", "open", "half_open", "cooldown over"), ("openai", "half_open", "closed", "probe ok"),
        ])
    ]  # fmt: skip
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        await store.write([*changes, full_request("r-1")])
        await store.write(changes[:2])
        assert await store.breaker_transitions() == changes[::-1]
        assert await store.breaker_transitions(limit=2) == changes[:1:-1]


@pytest.mark.anyio
async def test_a_stray_object_fails_the_whole_batch(tmp_path: Path) -> None:
    """A non-record in a batch makes the write a LedgerStoreError naming it; nothing of the batch lands."""
    async with SqliteLedgerStore(tmp_path / "ledger.db") as store:
        with pytest.raises(LedgerStoreError, match="not a ledger record: dict"):
            await store.write([*requests(3), {"request_id": "x"}])  # type: ignore[list-item]
        assert await store.count_requests() == 0


@pytest.mark.anyio
async def test_a_checkpoint_folds_the_log_into_the_file_beside_the_writes(tmp_path: Path) -> None:
    """After ``checkpoint`` every logged frame is in the database file; writes go on during it."""
    path = tmp_path / "ledger.db"
    async with SqliteLedgerStore(path) as store, anyio.create_task_group() as tg:
        await store.write(requests(2000))
        tg.start_soon(store.checkpoint)
        await store.write(requests(10, prefix="during"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, logged, folded = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    assert (busy, logged) == (0, folded)
    assert raw(path, "SELECT COUNT(*) FROM requests") == [(2010,)]

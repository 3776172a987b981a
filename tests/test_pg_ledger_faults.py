"""The PostgreSQL ledger under faults, on a real server: SIGKILL of a door process, a server restart mid-run.

A real child process (tests/pg_crash_worker.py) serves requests through a door whose ledger is
``$INTERLOCK_LEDGER_URL``. Killed, every request whose begin reached the server ends as exactly
one row once a store opens again, and every answer it printed is an ``ok`` row. With the server
stopped (``pg_ctl stop -m immediate``) mid-run, answers go on (the ledger spools to its local
SQLite file) and, the server back, the spool is replayed: the rows are exactly the requests
served, none twice. The password in the URL appears in no output, error or repr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import psycopg
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from pg_server import PgServer, free_port, running_pg

from interlock._records import BeginRecord, RequestRecord
from interlock.actors.cli._main import exit_on_bad_input
from interlock.adapters.stores._ledger_open import open_ledger_for_report, report_ledger_url
from interlock.adapters.stores._ledger_schema import LedgerStoreError
from interlock.adapters.stores._ledger_spool import LedgerSpool
from interlock.adapters.stores._pg_ledger import PostgresLedgerStore
from interlock.adapters.stores._pg_schema import SCHEMA_VERSION, migrate
from interlock.policies._store_url import redact_url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]  # child processes and server restarts

HERE = Path(__file__).parent
SPOOL = "interlock.sqlite-spool"  # where a door's PostgreSQL ledger spools, in its working directory


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    """The module's server; the tests that stop it start it again (``fresh_database`` makes sure)."""
    with running_pg() as server:
        yield server


@pytest.fixture
def url(pg: PgServer) -> str:
    """A fresh database of the test's own, its URL with the password."""
    return pg.fresh_database()


class Worker:
    """The worker process: its stdout read line by line, with a deadline."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._out = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []

    async def line(self, timeout: float = 30.0) -> str | None:
        """The next line, or None once stdout has ended."""
        try:
            with anyio.fail_after(timeout):
                text = (await self._out.receive_until(b"\n", 1 << 20)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return None
        self.lines.append(text)
        return text

    async def done(self, n: int) -> None:
        """Read until ``n`` more requests have been printed done."""
        seen = 0
        while seen < n:
            line = await self.line()
            assert line is not None, f"the worker ended: {self.lines[-3:]}"
            seen += line.startswith("done ")

    async def stop(self) -> str:
        """Ask the worker to stop, wait until its door closed and it exited 0; everything it printed."""
        assert self.process.stdin is not None
        await self.process.stdin.send(b"stop\n")
        while (line := await self.line()) is not None and line != "closed":
            pass
        assert line == "closed", await stderr_of(self.process)
        assert await self.process.wait() == 0
        return "\n".join(self.lines) + await stderr_of(self.process)

    def printed(self) -> set[str]:
        return {line.split()[1] for line in self.lines if line.startswith("done ")}


@contextlib.asynccontextmanager
async def worker(cwd: Path, url: str, loops: int, *, stuck: bool) -> AsyncIterator[Worker]:
    """The worker, with the server's URL (password included) in its environment; reaped however the test ends."""
    env = {**os.environ, "INTERLOCK_LEDGER_URL": url}
    spec = json.dumps({"loops": loops, "stuck": stuck})
    process = await anyio.open_process(
        [sys.executable, str(HERE / "pg_crash_worker.py"), spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=cwd, env=env,
    )  # fmt: skip
    try:
        yield Worker(process)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()


async def stderr_of(process: Process) -> str:
    assert process.stderr is not None
    with anyio.fail_after(30):
        return b"".join([chunk async for chunk in process.stderr]).decode(errors="replace")


def on_server(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()  # type: ignore[call-overload]  # the test's own statements


def outcomes(url: str) -> dict[str, str]:
    return {str(rid): str(o) for rid, o in on_server(url, "SELECT request_id, outcome FROM requests")}


def spooled(cwd: Path) -> int:
    conn = sqlite3.connect(cwd / SPOOL)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM spooled").fetchone()[0])
    finally:
        conn.close()


async def test_sigkill_of_a_door_process_leaves_one_row_per_request_that_entered(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """SIGKILL mid-load: printed answers are ok rows; begun requests close as interrupted once; rows = entered."""
    async with worker(tmp_path, url, 4, stuck=True) as w:
        assert await w.line() == "begun stuck-0"
        await w.done(40)
        async with PostgresLedgerStore(url, spool=None) as other:  # a live session is left alone
            assert other.recovered == 0
        os.kill(w.process.pid, signal.SIGKILL)
        assert await w.process.wait() == -signal.SIGKILL
        while await w.line() is not None:
            pass
        output = "\n".join(w.lines) + await stderr_of(w.process)
    printed = w.printed()
    open_at_kill = {str(rid) for (rid,) in on_server(url, "SELECT request_id FROM begun")}
    ended_at_kill = set(outcomes(url))
    assert "stuck-0" in open_at_kill
    assert not open_at_kill & printed  # an end deletes its begun row in its own commit
    async with PostgresLedgerStore(url, spool=tmp_path / SPOOL) as store:
        assert store.recovered == len(open_at_kill)
        assert await store.count_begun() == 0
        assert await store.count_requests() == len(ended_at_kill | open_at_kill)  # one row per request that entered
    final = outcomes(url)
    assert {rid for rid in printed if final[rid] == "ok"} == printed
    assert {rid for rid, o in final.items() if o == "interrupted"} == open_at_kill
    found = on_server(url, "SELECT tenant, task, attempts, model, provider FROM requests WHERE request_id = 'stuck-0'")
    assert found == [("acme", "stuck", 1, "stuck_model", "sim")]
    assert pg.password not in output


async def test_a_server_restart_mid_run_spools_then_replays_every_row_once(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """Stop the server mid-load: answers go on (spooled); started again, the spool replays; rows = answers, once."""
    async with worker(tmp_path, url, 4, stuck=False) as w:
        await w.done(30)
        pg.stop()
        await w.done(30)  # answered while the server is down: their rows are in the spool
        assert spooled(tmp_path) > 0
        pg.start_again()
        await w.done(30)
        output = await w.stop()
    printed = w.printed()
    final = outcomes(url)
    assert set(final) == printed  # every request served, and nothing else
    assert set(final.values()) == {"ok"}
    attempts = on_server(url, "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM attempts")
    assert attempts == [(len(printed), len(printed))]
    assert on_server(url, "SELECT COUNT(*) FROM begun") == [(0,)]
    assert spooled(tmp_path) == 0
    assert pg.password not in output


async def test_a_door_started_while_the_server_is_down_serves_and_its_rows_land_once_it_is_back(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """A gateway restarted during an outage comes up on its spool; the server back, every answer is one ok row."""
    pg.stop()
    async with worker(tmp_path, url, 4, stuck=False) as w:
        await w.done(30)  # served with the server down from the start
        assert spooled(tmp_path) > 0
        pg.start_again()
        await w.done(30)
        output = await w.stop()
    printed = w.printed()
    final = outcomes(url)
    assert set(final) == printed
    assert set(final.values()) == {"ok"}
    assert on_server(url, "SELECT COUNT(*) FROM begun") == [(0,)]
    assert spooled(tmp_path) == 0
    assert pg.password not in output


def request(request_id: str, **fields: object) -> RequestRecord:
    return RequestRecord(request_id=request_id, ts=1.0, tenant="acme", caller="c", task="t", **fields)  # type: ignore[arg-type]


async def test_batches_spooled_while_down_replay_in_order_and_a_replay_twice_adds_nothing(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """Begins and ends spooled across batches land as their order says; a batch replayed again adds nothing."""
    spool = tmp_path / "spool"
    async with PostgresLedgerStore(url, spool=spool, retry_s=0.0) as store:
        await store.write([BeginRecord(request_id="a", ts=1.0, tenant="acme", caller="c", task="t")])
        pg.stop()
        await store.write([BeginRecord(request_id="b", ts=1.0, tenant="acme", caller="c", task="t"), request("a")])
        await store.write([request("b"), BeginRecord(request_id="c", ts=1.0, tenant="acme", caller="c", task="t")])
        assert store.spooling
        assert store.outage is not None
        assert pg.password not in store.outage
        assert await store.spooled_batches() == 2
        pg.start_again()
        await store.write([request("d")])
        assert not store.spooling
        assert (store.replayed, await store.spooled_batches()) == (2, 0)
        assert (await store.count_requests(), await store.count_begun()) == (3, 1)
        # A crash between the server's commit and the spool's delete: the batch is replayed once more.
        again = LedgerSpool(spool)
        again.append([request("a"), request("b"), BeginRecord(request_id="b", ts=1.0, tenant="acme", caller="c",
                                                                task="t")], "0123456789abcdef")  # fmt: skip
        again.close()
    async with PostgresLedgerStore(url, spool=spool) as store:
        assert store.replayed == 1
        assert (await store.count_requests(), await store.count_begun()) == (4, 0)  # c closed as interrupted
        assert {r.request_id: r.outcome for r in await store.fetch_requests()} == {
            "a": "ok", "b": "ok", "c": "interrupted", "d": "ok",
        }  # fmt: skip


async def test_a_real_end_replaces_an_interrupted_guess_and_nothing_else(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """An interrupted row (its session looked dead during a restart) gives way to the real end; an ok row never does."""
    async with PostgresLedgerStore(url, spool=None) as store:
        await store.write([request("x", outcome="interrupted", error="interrupted"), request("y", cost_cents=1.0)])
        await store.write([request("x", cost_cents=2.0), request("y", cost_cents=3.0)])
        found = {r.request_id: (r.outcome, r.cost_cents) for r in await store.fetch_requests()}
    assert found == {"x": ("ok", 2.0), "y": ("ok", 1.0)}


async def test_the_password_is_in_no_error_or_repr(pg: PgServer, url: str, tmp_path: Path) -> None:
    """A wrong password, a server that is not there, a write with no spool: each error names the redacted URL."""
    wrong = url.replace(pg.password, "not-" + pg.password)
    absent = url.replace(f":{pg.port}/", f":{free_port()}/")
    for bad in (wrong, absent):
        store = PostgresLedgerStore(bad, spool=None)
        assert "pw-" not in repr(store)
        with pytest.raises(LedgerStoreError) as caught:
            await store.open()
        assert "pw-" not in str(caught.value)
        assert "postgresql://postgres:***@127.0.0.1:" in str(caught.value)
        assert "\n" not in str(caught.value)
    async with PostgresLedgerStore(url, spool=None) as store:
        pg.stop()
        with pytest.raises(LedgerStoreError, match="no spool") as down:
            await store.write([request("z")])
        assert pg.password not in str(down.value)
        assert redact_url(url) in str(down.value)
        pg.start_again()


async def test_an_older_schema_is_upgraded_in_place(url: str) -> None:
    """A database left at migration 1 gains the later ones when a store opens it, its rows kept."""
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn, redact_url(url), upto=1) == 1
        columns = "request_id, ts, tenant, caller, task, outcome"
        conn.execute(f"INSERT INTO requests ({columns}) VALUES ('old', 1, 'a', 'c', 't', 'ok')")  # type: ignore[call-overload]
    async with PostgresLedgerStore(url, spool=None) as store:
        assert [r.request_id for r in await store.fetch_requests()] == ["old"]
    assert on_server(url, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]


def test_the_report_reads_the_ledger_named_by_flag_then_environment_then_config() -> None:
    """``--ledger`` wins, then ``$INTERLOCK_LEDGER_URL``, then ``[ledger] url``, then its path; no password shown."""
    env = {"INTERLOCK_LEDGER_URL": "postgresql://u:secret-pw@127.0.0.1:5432/env"}
    config = {"configured_url": "postgresql://u@127.0.0.1:5432/conf", "configured_path": "conf.sqlite"}
    assert report_ledger_url("x.sqlite", environ=env, **config).path == "x.sqlite"
    from_env = report_ledger_url(None, environ=env, **config)
    assert (from_env.kind, from_env.shown) == ("postgresql", "postgresql://u:***@127.0.0.1:5432/env")
    assert "secret-pw" not in repr(from_env)
    assert report_ledger_url(None, environ={}, **config).shown == "postgresql://u@127.0.0.1:5432/conf"
    assert report_ledger_url(None, environ={}, configured_url=None, configured_path="conf.sqlite").path == "conf.sqlite"
    assert report_ledger_url(None, environ={}, configured_url=None, configured_path=None).path == "interlock.sqlite"


async def test_the_report_opens_a_postgresql_ledger_to_read_it(url: str) -> None:
    """What ``interlock report --ledger postgresql://...`` opens: the rows a door wrote, read without a spool."""
    async with PostgresLedgerStore(url, spool=None) as store:
        await store.write([request("r-1"), request("r-2", outcome="error", error="timeout")])
    where = report_ledger_url(url, environ={}, configured_url=None, configured_path=None)
    async with open_ledger_for_report(where) as reader:
        assert [r.outcome for r in await reader.fetch_requests()] == ["ok", "error"]
        assert await reader.breaker_transitions() == []


async def test_a_stray_object_is_refused_while_spooling_too(pg: PgServer, url: str, tmp_path: Path) -> None:
    """With the server down, a batch holding a non-record fails at once and never reaches the spool."""
    async with PostgresLedgerStore(url, spool=tmp_path / "spool") as store:
        pg.stop()
        await store.write([request("s-1")])
        with pytest.raises(LedgerStoreError, match="not a ledger record: dict"):
            await store.write([request("s-2"), {"request_id": "x"}])  # type: ignore[list-item]
        assert await store.spooled_batches() == 1
        pg.start_again()
    async with PostgresLedgerStore(url, spool=tmp_path / "spool") as store:
        assert [r.request_id for r in await store.fetch_requests()] == ["s-1"]


def test_without_psycopg_a_postgresql_ledger_is_a_config_error_and_sqlite_still_opens(tmp_path: Path) -> None:
    """psycopg is the ``postgres`` extra: without it the URL is a one-line config error; the embedded ledger works."""
    code = """
import sys, anyio
sys.modules["psycopg"] = None  # as if the extra were not installed
from interlock._errors import ConfigError
from interlock.adapters.stores._ledger_open import open_ledger_store
from interlock.policies._store_url import LEDGER_KINDS, parse_store_url

async def main():
    async with open_ledger_store(parse_store_url(sys.argv[1], key="l", allowed=LEDGER_KINDS)):
        print("sqlite opened")
    try:
        async with open_ledger_store(parse_store_url("postgresql://u@127.0.0.1:1/x", key="l", allowed=LEDGER_KINDS)):
            pass
    except ConfigError as exc:
        print(exc)
anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "l.db")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == "sqlite opened"
    assert "pip install 'interlock[postgres]'" in done.stdout.splitlines()[1]


def test_a_server_that_is_down_is_one_line_without_the_password_at_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What ``interlock report`` prints when the ledger's server is not there: one line, exit 2, no password."""
    where = report_ledger_url(
        f"postgresql://u:sekrit-pw@127.0.0.1:{free_port()}/x", configured_url=None, configured_path=None, environ={}
    )

    async def read() -> None:
        async with open_ledger_for_report(where):
            pass

    def run() -> int:
        anyio.run(read)
        return 0

    assert exit_on_bad_input("report", run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("interlock report: ledger postgresql://u:***@127.0.0.1:")
    assert "open failed" in err
    assert "sekrit-pw" not in err


async def test_a_restart_between_two_writes_costs_no_spooling(pg: PgServer, url: str, tmp_path: Path) -> None:
    """The write after a server restart finds its connection cut, makes a new one, and commits on the server."""
    async with PostgresLedgerStore(url, spool=tmp_path / "spool") as store:
        await store.write([request("before")])
        pg.stop()
        pg.start_again()
        await store.write([request("after")])
        assert not store.spooling
        assert await store.spooled_batches() == 0
        assert [r.request_id for r in await store.fetch_requests()] == ["after", "before"]


async def test_a_store_opened_while_the_server_is_down_spools_then_does_the_opening_first(
    pg: PgServer, url: str, tmp_path: Path
) -> None:
    """Down at start: the store opens on its spool; back, the last process's spool and dead session go first."""
    spool = tmp_path / "spool"
    left = LedgerSpool(spool)  # what a process killed during an earlier outage left behind
    begin_old = BeginRecord(request_id="old-open", ts=1.0, tenant="acme", caller="c", task="t")
    left.append([begin_old, request("old-done")], "0123456789abcdef")
    left.close()
    pg.stop()
    async with PostgresLedgerStore(url, spool=spool, retry_s=0.0) as store:
        assert store.spooling
        assert store.outage is not None
        assert pg.password not in store.outage
        assert store.recovered == 0  # nothing can be closed before the server answers
        await store.write([BeginRecord(request_id="new-1", ts=2.0, tenant="acme", caller="c", task="t"),
                           request("new-0")])  # fmt: skip
        assert await store.spooled_batches() == 2
        with pytest.raises(LedgerStoreError, match=r"postgresql://postgres:\*\*\*@127\.0\.0\.1:"):
            await store.count_requests()  # reads need the server
        pg.start_again()
        await store.write([request("new-1")])
        assert not store.spooling
        assert (store.replayed, store.recovered, await store.spooled_batches()) == (2, 1, 0)
        outcomes = {r.request_id: r.outcome for r in await store.fetch_requests()}
        assert outcomes == {"old-done": "ok", "old-open": "interrupted", "new-0": "ok", "new-1": "ok"}
        assert await store.count_begun() == 0  # new-1's begin (spooled on this session) went with its end


async def test_a_server_that_refuses_at_start_is_an_error_not_an_outage(pg: PgServer, url: str, tmp_path: Path) -> None:
    """A wrong password or a missing database is a configuration error at start, spool or not."""
    wrong = url.replace(pg.password, "not-" + pg.password)
    missing = url.rsplit("/", 1)[0] + "/no_such_database"
    for bad in (wrong, missing):
        with pytest.raises(LedgerStoreError, match="open failed") as caught:
            async with PostgresLedgerStore(bad, spool=tmp_path / "spool"):
                pass
        assert pg.password not in str(caught.value)

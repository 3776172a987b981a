"""``interlock report`` reads a PostgreSQL ledger, named by ``--ledger`` or ``$INTERLOCK_LEDGER_URL``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from pg_server import PgServer, running_pg

from interlock._records import RequestRecord
from interlock.adapters.stores._ledger_open import open_ledger_store
from interlock.policies._store_url import LEDGER_KINDS, parse_store_url


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with running_pg() as server:
        yield server


def _write(url: str, spool: Path, n: int) -> None:
    async def main() -> None:
        where = parse_store_url(url, key="$INTERLOCK_LEDGER_URL", allowed=LEDGER_KINDS, from_env=True)
        async with open_ledger_store(where, spool=spool) as store:
            await store.write([
                RequestRecord(request_id=f"r{i:04d}", ts=1_700_000_000.0 + i, tenant="acme", caller="t",
                              task="cheap_bulk", model="mini", provider="sim", cost_cents=0.5, attempts=1)
                for i in range(n)
            ])  # fmt: skip

    anyio.run(main)


def _report(tmp_path: Path, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "report", "--json", *argv],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def test_report_reads_a_postgresql_ledger_and_never_shows_its_password(pg: PgServer, tmp_path: Path) -> None:
    _write(pg.url, tmp_path / "spool.sqlite", 7)
    by_env = _report(tmp_path, env={"INTERLOCK_LEDGER_URL": pg.url})
    assert by_env.returncode == 0, by_env.stderr
    summary = json.loads(by_env.stdout)
    assert sum(row["calls"] for row in summary["tasks"]) == 7
    bare = pg.url.replace(f":{pg.password}@", "@")  # the password from the server's own PGPASSWORD
    by_flag = _report(tmp_path, "--ledger", bare, env={"PGPASSWORD": pg.password})
    assert by_flag.returncode == 0, by_flag.stderr
    again = json.loads(by_flag.stdout)
    assert {k: v for k, v in again.items() if k != "generated_at"} == {
        k: v for k, v in summary.items() if k != "generated_at"
    }
    for done in (by_env, by_flag):
        assert pg.password not in done.stdout + done.stderr

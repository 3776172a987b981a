"""Smoke test of ``benchmarks/ledger_pg.py``: tiny sizes, its own PostgreSQL server, the JSON summary line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pg_server import find_bin_dir

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "ledger_pg.py"


@pytest.mark.slow
def test_the_postgresql_ledger_benchmark_reports_both_drivers_and_the_sqlite_baseline() -> None:
    """Both drivers, the store, and the actor on PostgreSQL and on SQLite report finite figures and their ratios."""
    if find_bin_dir() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    argv = ["--records", "3000", "--producers", "4", "--rate", "5000", "--paced-seconds", "0.2", "--batch", "256",
            "--rounds", "1", "--concurrency", "8", "--durable-rate", "200", "--durable-seconds", "0.2"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2, done.stdout
    summary = json.loads(lines[-1])
    for key in ("psycopg_records_per_s", "asyncpg_records_per_s", "store_records_per_s", "pg_records_per_s",
                "sqlite_records_per_s", "pg_p99_enqueue_ms", "sqlite_p99_enqueue_ms", "pg_final_event_p99_ms",
                "p99_enqueue_ratio", "asyncpg_vs_psycopg"):  # fmt: skip
        assert isinstance(summary[key], int | float), key
        assert math.isfinite(summary[key]), key
        assert summary[key] >= 0, key
    assert summary["pg_vs_sqlite_records"] == pytest.approx(
        summary["pg_records_per_s"] / summary["sqlite_records_per_s"], rel=0.01
    )
    assert summary["records"] == 3000

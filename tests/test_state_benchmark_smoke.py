"""Smoke test of benchmarks/state.py: tiny sizes against its own redis-server, ending with its JSON summary."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import need_redis

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "state.py"


@pytest.mark.slow
def test_state_benchmark_reports_pair_latencies_and_the_door_cpu_ratio() -> None:
    """The state benchmark times Redis and SQLite reserve + settle and the door on each, and prints their ratio."""
    need_redis()
    sizes = ["--pairs", "50", "--warmup", "5", "--requests", "20"]
    argv = [*sizes, "--concurrency", "4", "--tokens", "3", "--rounds", "1"]
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), *argv], capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 2, proc.stdout  # the human-readable report comes before the JSON line
    summary = json.loads(lines[-1])
    keys = (
        "redis_pair_p50_ms", "redis_pair_p99_ms", "sqlite_pair_p50_ms", "sqlite_pair_p99_ms", "ping_pair_p99_ms",
        "door_redis_cpu_ms_per_req", "door_sqlite_cpu_ms_per_req", "door_redis_rps", "door_sqlite_rps",
        "redis_server_cpu_ms_per_req", "cpu_ratio",
    )  # fmt: skip
    for key in keys:
        assert isinstance(summary[key], int | float), key
        assert math.isfinite(summary[key]), key
        assert summary[key] >= 0, key
    assert summary["redis_pair_p50_ms"] > 0
    assert summary["cpu_ratio"] == pytest.approx(
        summary["door_redis_cpu_ms_per_req"] / summary["door_sqlite_cpu_ms_per_req"], rel=0.01
    )
    assert (summary["pairs"], summary["requests"]) == (50, 20)

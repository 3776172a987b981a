"""Smoke tests of the benchmarks: each runs with tiny sizes and ends with its JSON summary line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(name: str, *argv: str) -> dict[str, Any]:
    """Run ``benchmarks/<name>`` as a subprocess; its last stdout line, decoded as JSON."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *argv],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 2, proc.stdout  # a human-readable report comes before the JSON line
    summary = json.loads(lines[-1])
    assert isinstance(summary, dict)
    return summary


def assert_figures(summary: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Every key is present and a finite, non-negative number."""
    for key in keys:
        value = summary[key]
        assert isinstance(value, int | float), key
        assert math.isfinite(value), key
        assert value >= 0, key


@pytest.mark.slow
def test_overhead_benchmark_reports_cpu_ratio() -> None:
    """The overhead benchmark measures door, adapter and floor against a simulator process and prints the ratio."""
    summary = run_benchmark(
        "overhead.py", "--requests", "40", "--concurrency", "8", "--tokens", "5", "--warmup", "8", "--rounds", "1"
    )
    keys = ("cpu_ratio", "door_cpu_ms_per_req", "floor_cpu_ms_per_req", "door_rps", "floor_rps",
            "door_p50_ms", "door_p99_ms", "floor_p50_ms", "floor_p99_ms", "adapter_cpu_ms_per_req")
    assert_figures(summary, keys)
    assert summary["cpu_ratio"] == pytest.approx(
        summary["door_cpu_ms_per_req"] / summary["floor_cpu_ms_per_req"], rel=0.01
    )
    assert summary["requests"] == 40


@pytest.mark.slow
def test_ledger_benchmark_reports_rate_and_enqueue_wait() -> None:
    """The ledger benchmark writes every record through a real LedgerActor and reports rate, wait and baseline."""
    summary = run_benchmark(
        "ledger.py", "--records", "3000", "--producers", "4", "--rate", "10000", "--paced-seconds", "0.2",
        "--batch", "256", "--flush-ms", "20", "--rounds", "1",
    )
    keys = ("records_per_s", "p99_enqueue_ms", "store_records_per_s", "ratio", "paced_records_per_s",
            "flat_out_p99_enqueue_ms")
    assert_figures(summary, keys)
    assert summary["records_per_s"] > 0
    assert isinstance(summary["paced_kept_up"], bool)
    assert summary["ratio"] == pytest.approx(summary["records_per_s"] / summary["store_records_per_s"], rel=0.01)


@pytest.mark.slow
def test_hedging_benchmark_reports_ttft_ratio_and_extra_requests() -> None:
    """The hedging benchmark counts upstream requests of both runs and compares their p99 TTFT."""
    summary = run_benchmark(
        "hedging.py", "--requests", "40", "--concurrency", "8", "--tail-p", "0.2", "--stall-s", "0.4",
        "--hedge-after-ms", "60",
    )
    keys = ("p99_ttft_ratio", "extra_request_share", "off_p99_ttft_ms", "on_p99_ttft_ms",
            "off_upstream_requests", "on_upstream_requests")
    assert_figures(summary, keys)
    assert summary["off_upstream_requests"] == 40  # without hedges every request makes exactly one call
    # Each hedge adds at most one call (one cancelled at once may never reach the simulator).
    assert 40 <= summary["on_upstream_requests"] <= 40 + summary["on_hedged_replies"]


@pytest.mark.slow
def test_serve_workers_benchmark_compares_two_workers_with_one() -> None:
    """The workers benchmark streams through real ``interlock serve`` processes with 1 and 2 workers."""
    summary = run_benchmark(
        "serve_workers.py", "--requests", "40", "--warmup", "4", "--concurrency", "8", "--tokens", "4",
    )  # fmt: skip
    assert_figures(summary, ("workers_1_requests_per_s", "workers_2_requests_per_s", "ratio", "workers_2_p99_ms"))
    assert summary["workers"] == 2
    assert summary["ratio"] > 0

"""``benchmarks/dashboard.py`` runs: a smoke test on a small ledger (the figures themselves are the benchmark's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_benchmark_runs_and_ends_with_its_json_line(tmp_path: Path) -> None:
    """``benchmarks/dashboard.py`` on a small ledger: every page timed, the baselines beside them."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "dashboard.py"
    command = [sys.executable, str(script), "--rows", "3000", "--rounds", "1", "--ledger", str(tmp_path / "b.sqlite")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 3000
    assert len(summary["pages_ms"]) == 15
    assert summary["slowest_page_ms"] == max(summary["pages_ms"].values())
    assert summary["group_by_scan_ms"] > 0

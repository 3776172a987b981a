"""`interlock demo`, the README's first command, run as a user runs it: its own process, no keys."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_demo_shows_fallbacks_hedges_a_breaker_trip_and_the_report(tmp_path: Path) -> None:
    """The demo finishes, trips the outage provider's breaker, and its ledger holds hedged and degraded answers."""
    ledger = tmp_path / "demo.sqlite"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "demo", "--ledger", str(ledger)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "400/400" in out
    breakers = dict(re.findall(r"(sim_\w+)\s+breaker=\w+\s+healthy=\w+\s+transitions=(\d+)", out))
    assert len(breakers) == 4
    assert int(breakers["sim_gemini"]) >= 1  # the outage opened its breaker
    assert "interlock report" in out
    with sqlite3.connect(ledger) as conn:
        requests = conn.execute("SELECT COUNT(*), SUM(hedged), SUM(degraded) FROM requests").fetchone()
        outage = conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE provider = 'sim_gemini' AND outcome = 'error'"
        ).fetchone()[0]
    count, hedged, degraded = requests
    assert count >= 400  # every request, plus the reviewers' sub-requests
    assert hedged >= 1
    assert degraded >= 1
    assert outage >= 1

"""`interlock demo`, the README's first command, run as a user runs it: its own process, no keys."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from interlock._records import AttemptRecord
from interlock.policies._quality import quality_rollup


def test_demo_shows_fallbacks_hedges_a_breaker_trip_and_the_report(tmp_path: Path) -> None:
    """The demo finishes, trips a breaker, records hedged and degraded answers, and flags a model from its verdicts."""
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
    assert f"interlock dashboard --ledger {ledger}" in out  # the demo ends by naming its pictures
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
    assert_the_quality_loop_shows(out, ledger)


def assert_the_quality_loop_shows(out: str, ledger: Path) -> None:
    """The demo prints verdicts per job and model and flags a model from its judged verdicts alone."""
    assert "Verdicts by job and model" in out
    assert "Demotion candidates" in out
    assert "demote?" in out
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT task, model, verdict FROM attempts WHERE verdict IS NOT NULL").fetchall()
    attempts = [
        AttemptRecord(request_id=f"r{i}", attempt=0, ts=0.0, tenant="t", caller="c", task=task, model_class="",
                      model=model, provider="p", outcome="ok", verdict=verdict)
        for i, (task, model, verdict) in enumerate(rows)
    ]  # fmt: skip
    flagged = quality_rollup(attempts, now=1.0).demotions
    assert [d.task for d in flagged]
    assert {d.task for d in flagged} == {"extract"}
    for d in flagged:
        assert d.model in out
        assert d.better_model in out
        assert min(d.judged, d.better_judged) >= 20
    # Without a single unjudged verdict (a reviewer that could not run) the same models are flagged.
    judged_only = [a for a in attempts if a.verdict is not None and not a.verdict.startswith("unjudged:")]
    assert quality_rollup(judged_only, now=1.0).demotions == flagged

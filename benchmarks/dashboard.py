"""Dashboard pages over a big ledger: how long each page takes to draw, against plain scans of the same file.

Run: ``python benchmarks/dashboard.py [--rows 1000000] [--ledger FILE] [--report]``. It builds a
ledger file of ``--rows`` requests (one attempt each, a tenth with a hedge) spread over the last
30 days, with the store's own schema (``migrate``) and plain ``executemany`` inserts (a few
seconds per million rows; ``--ledger`` keeps and reuses the file). Then it fetches every page, in
process through the ASGI app, for the whole ledger, for the last day and for one job; each page
is fetched ``--rounds`` times and the best time is kept. The very first fetch is timed on its own:
it builds the dashboard's summaries and its indexed copy of the latency and cost columns, in its
own temporary database (``_summary``: the ledger file gets no index of the dashboard's), once per
process; later views add only the rows appended since.

Baselines, measured in the same run over the same file: ``SELECT COUNT(*) FROM requests``, and a
full-table ``GROUP BY task, model`` with no index (what a page would cost without its indexes);
with ``--report``, ``interlock report --json`` over the same file too (it loads every record).
Target: every page under 1 s at 1M rows. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from interlock.adapters.dashboard._app import dashboard_app
from interlock.adapters.dashboard._ledger_sql import check_ledger
from interlock.adapters.stores._ledger_schema import migrate

PAGES = ("/ui", "/ui/models", "/ui/tenants", "/ui/providers", "/ui/quality")
QUERIES = ("", "?since=1d", "?job=extract")
DAY = 86400.0
_JOBS = ("summarize", "extract", "classify", "chat", "translate", "review")
_MODELS = (("openai", "gpt"), ("openai", "mini"), ("anthropic", "claude"), ("gemini", "flash"), ("local", "llama"))
# The columns of migration 1, in its order; the later ones keep their defaults.
_REQUEST_COLUMNS = (
    "request_id, ts, tenant, caller, task, model_class, model, provider, outcome, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, cost_cents, ttft_ms, ttlt_ms, error, error_detail, degraded,"
    " degraded_reason, hedged, attempts, cache_hit, verdict"
)
_ATTEMPT_COLUMNS = (
    "request_id, attempt, ts, tenant, caller, task, model_class, model, provider, outcome, input_tokens,"
    " output_tokens, cache_read_tokens, cache_write_tokens, cost_cents, ttft_ms, ttlt_ms, error, error_detail,"
    " status, finish_reason, hedge, cancel_reason, cache_hit, verdict"
)
_VERDICTS = ("accept:schema", "accept:schema", "accept:schema", "reject:schema:missing field", None)


def build(path: Path, rows: int, seed: int = 18) -> None:
    """Write ``rows`` requests and their attempts over the last 30 days into a new ledger at ``path``."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    migrate(conn, str(path))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    now = time.time()
    start = now - 30 * DAY
    step = 30 * DAY / rows
    requests, attempts = [], []
    for i in range(rows):
        ts = start + i * step
        provider, model = _MODELS[i % 5]
        task = _JOBS[(i * 7) % 6]
        tenant = ("acme", "globex", "initech", "umbrella")[i % 4]
        ttft = None if i % 17 == 0 else rng.lognormvariate(5.2, 0.7)
        ttlt = None if ttft is None else ttft + rng.uniform(50, 1500)
        cost = rng.uniform(0.01, 0.5)
        degraded, hedged = int(i % 9 == 0), int(i % 10 == 0)
        rid = f"{int(ts * 1000):012x}{i:08x}"
        requests.append((rid, ts, tenant, "api", task, "fast", model, provider, "ok", 100, 200, 0, 0, cost, ttft, ttlt,
                         None, "", degraded, None, hedged, 1 + hedged, 0, None))  # fmt: skip
        verdict = _VERDICTS[i % 5] if task == "extract" else None
        error = "overloaded" if i % 23 == 0 else None
        attempts.append((rid, 0, ts, tenant, "api", task, "fast", model, provider, "error" if error else "ok", 100,
                         200, 0, 0, cost, ttft, ttlt, error, "", None, "stop", 0, None, 0, verdict))  # fmt: skip
        if hedged:
            attempts.append((rid, 1, ts, tenant, "api", task, "fast", model, provider, "cancelled", 0, 0, 0, 0, 0.0,
                             None, None, None, "", None, None, 1, "hedge_lost", 0, None))  # fmt: skip
    with conn:
        conn.executemany(f"INSERT INTO requests ({_REQUEST_COLUMNS}) VALUES ({_placeholders(24)})", requests)
        conn.executemany(f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES ({_placeholders(25)})", attempts)
        conn.executemany(
            "INSERT INTO breaker_transitions VALUES (?, ?, ?, ?, ?)",
            [(now - 2 * DAY + k * 60, "gemini", f, t, "failure_rate")
             for k, (f, t) in enumerate((("closed", "open"), ("open", "half_open"), ("half_open", "closed")))],
        )  # fmt: skip
    conn.close()


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def best_of(rounds: int, run: object) -> float:
    """The shortest of ``rounds`` timings of ``run()``, in milliseconds."""
    assert callable(run)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times)


def baselines(path: Path, rounds: int) -> dict[str, float]:
    """The same run's plain scans: a COUNT(*), and an unindexed GROUP BY over the whole table."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("PRAGMA cache_size = -65536")
    try:
        count_ms = best_of(rounds, lambda: conn.execute("SELECT COUNT(*) FROM requests").fetchone())
        scan = "SELECT task, model, COUNT(*), TOTAL(cost_cents) FROM requests NOT INDEXED GROUP BY task, model"
        scan_ms = best_of(rounds, lambda: conn.execute(scan).fetchall())
    finally:
        conn.close()
    return {"count_ms": count_ms, "group_by_scan_ms": scan_ms}


async def pages(path: Path, rounds: int) -> tuple[float, dict[str, float]]:
    """The first view's seconds, and the best time of each page and window, through the dashboard's ASGI app."""
    out: dict[str, float] = {}
    transport = httpx.ASGITransport(app=dashboard_app(path))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard", timeout=600) as client:
        t0 = time.perf_counter()
        assert (await client.get(PAGES[0])).status_code == 200
        first_s = time.perf_counter() - t0
        for page in PAGES:
            for query in QUERIES:
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    answer = await client.get(page + query)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert answer.status_code == 200, (page, query, answer.status_code)
                    assert "<svg" in answer.text, (page, query)
                out[page + query] = min(times)
    return first_s, out


def report_ms(path: Path) -> float:
    """``interlock report --json`` over the same file, as a process (it reads every record)."""
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "interlock.actors.cli._main", "report", "--ledger", str(path), "--json"]
    subprocess.run(command, check=True, capture_output=True)
    return (time.perf_counter() - t0) * 1000


@contextlib.contextmanager
def ledger_file(given: str | None) -> Iterator[Path]:
    """The ledger to read: ``given`` (kept), or a file in a temporary directory (removed after)."""
    if given is not None:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "ledger.sqlite"


def main(argv: list[str] | None = None) -> int:
    """Build the ledger, time every page and the baselines, print them and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ledger", default=None, help="build into (or reuse) this file instead of a temporary one")
    parser.add_argument("--report", action="store_true", help="also time `interlock report --json` (slow at 1M)")
    args = parser.parse_args(argv)
    with ledger_file(args.ledger) as path:
        built_s = 0.0
        if not path.exists():
            t0 = time.perf_counter()
            build(path, args.rows)
            built_s = time.perf_counter() - t0
        rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        check_ledger(path)
        base = baselines(path, args.rounds)
        first_s, timed = asyncio.run(pages(path, args.rounds))
        report = report_ms(path) if args.report else None
    slowest = max(timed, key=lambda k: timed[k])
    print(f"ledger: {rows:,} requests (built in {built_s:.1f} s); first page view (summaries built): {first_s:.1f} s")
    print(f"baseline COUNT(*): {base['count_ms']:.1f} ms; unindexed GROUP BY scan: {base['group_by_scan_ms']:.1f} ms")
    if report is not None:
        print(f"baseline interlock report --json: {report:,.0f} ms")
    for page, ms in timed.items():
        print(f"  {page:<26} {ms:8.1f} ms   {ms / base['group_by_scan_ms']:5.2f}x the unindexed scan")
    print(f"slowest page: {slowest} at {timed[slowest]:.1f} ms (target < 1000 ms)")
    summary = {
        "rows": rows, "first_view_s": round(first_s, 2), "count_ms": round(base["count_ms"], 2),
        "group_by_scan_ms": round(base["group_by_scan_ms"], 2), "report_ms": None if report is None else round(report),
        "slowest_page": slowest, "slowest_page_ms": round(timed[slowest], 1),
        "slowest_vs_scan": round(timed[slowest] / base["group_by_scan_ms"], 3),
        "under_1s": timed[slowest] < 1000, "pages_ms": {k: round(v, 1) for k, v in timed.items()},
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The dashboard, server-side: every page's figures equal ``interlock report --json``; keys; filters.

The ledger is written by the real store, with records spread over the last 30 hours (several
jobs, tenants, models and providers; missing TTFTs, degraded and hedged requests, errors, verdicts
of every kind, breaker transitions, one cost outlier and one spend spike). The report is run as
the command runs it (``print_report(..., as_json=True)``), and its JSON compared with the data
each page draws for the same window. The pages are fetched over HTTP from a real uvicorn server.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette

import interlock
from interlock._records import AttemptRecord, BreakerRecord, RequestRecord
from interlock.actors.cli._report import print_report
from interlock.adapters._config_file import default_config
from interlock.adapters.dashboard import _figures as figures
from interlock.adapters.dashboard._app import dashboard_app
from interlock.adapters.dashboard._detail import sql_quality
from interlock.adapters.dashboard._ledger_sql import check_ledger
from interlock.adapters.dashboard._pages import jobs_models_data, overview_data, tenants_data
from interlock.adapters.dashboard._pages_ops import providers_data, quality_data
from interlock.adapters.dashboard._summary import LATENCY_EDGES, Summary
from interlock.adapters.dashboard._window import Window
from interlock.adapters.gateway._app import build_app
from interlock.adapters.gateway._edge import VirtualKey
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._rollup import HOUR, hour_of, percentile

pytestmark = pytest.mark.anyio

NOW = time.time()
START = hour_of(NOW) - 30 * HOUR
ADMIN = "adm-0123456789abcdef0123"
ACME_KEY = "sk-ilk-acme-0123456789abcdef"
KEYS = {ACME_KEY: VirtualKey(tenant="acme", caller="svc")}
JOBS = ("summarize", "extract", "classify")
MODELS = (("openai", "gpt"), ("anthropic", "claude"), ("local", "llama"))
VERDICTS = (
    "accept:schema", "accept:schema", "accept:reviewer%3Aclaude", "reject:schema:missing field",
    "unjudged:reviewer:no reviewer", "reject:reviewer:verifier failed: timeout", "pass",
)  # fmt: skip


def _records(rng: random.Random) -> list[RequestRecord | AttemptRecord | BreakerRecord]:
    out: list[RequestRecord | AttemptRecord | BreakerRecord] = []
    for i in range(900):
        ts = START + rng.uniform(0, 30 * HOUR - 120)
        if i < 40:  # a burst in hour 26: a spend spike against the quiet hours before it
            ts = START + 26 * HOUR + rng.uniform(0, 3000)
        provider, model = rng.choice(MODELS)
        task, tenant = rng.choice(JOBS), rng.choice(("acme", "globex", "initech"))
        failed = rng.random() < 0.06
        ttft = None if failed or rng.random() < 0.1 else round(rng.lognormvariate(5, 0.8), 3)
        cost = 50.0 if i == 77 else (0.0 if failed else round(rng.uniform(0.01, 0.4) * (8 if i < 40 else 1), 5))
        rid = f"r{i:05d}"
        hedged = rng.random() < 0.1
        common = {"request_id": rid, "ts": ts, "tenant": tenant, "caller": rng.choice(("api", "batch")), "task": task}
        out.append(RequestRecord(
            **common, model_class="fast", model="" if failed else model, provider="" if failed else provider,
            outcome="error" if failed else "ok", input_tokens=rng.randint(5, 500), output_tokens=rng.randint(1, 300),
            cache_read_tokens=rng.choice((0, 0, 40)), cost_cents=cost, ttft_ms=ttft,
            ttlt_ms=None if ttft is None else ttft + rng.uniform(10, 900), error="overloaded" if failed else None,
            degraded=rng.random() < (0.45 if task == "extract" else 0.2), hedged=hedged, attempts=2 if hedged else 1,
        ))  # fmt: skip
        attempt = {**common, "model_class": "fast", "model": model, "provider": provider}
        out.append(AttemptRecord(
            **attempt, attempt=0, outcome="error" if failed else "ok", error=rng.choice(("overloaded", "timeout", None))
            if failed else None, cost_cents=cost, ttft_ms=ttft, start_ms=0.0, duration_ms=rng.uniform(50, 900),
            verdict=rng.choice(VERDICTS) if task == "extract" else None,
        ))  # fmt: skip
        if hedged:
            out.append(AttemptRecord(**attempt, attempt=1, outcome="cancelled", hedge=True, cancel_reason="hedge_lost",
                                     start_ms=120.0, duration_ms=80.0))  # fmt: skip
    for k, (frm, to, cause) in enumerate((("closed", "open", "failure_rate"), ("open", "half_open", "probe"),
                                          ("half_open", "closed", "probe_passed"))):  # fmt: skip
        out.append(
            BreakerRecord(ts=START + 20 * HOUR + 60 * k, provider="anthropic", from_state=frm, to_state=to, cause=cause)
        )
    return out


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger file the real store wrote, checked as the dashboard checks it."""
    path = tmp_path_factory.mktemp("dashboard") / "ledger.sqlite"

    async def write() -> None:
        async with SqliteLedgerStore(path) as store:
            await store.write(_records(random.Random(18)))

    anyio.run(write)
    check_ledger(path)
    return path


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Any]:
    """The dashboard's connection to ``path``: its hourly summaries built, in one read snapshot."""
    summary = Summary(path)
    try:
        with summary.reading() as conn:
            yield conn
    finally:
        summary.close()


async def report_json(path: Path, capsys: pytest.CaptureFixture[str], **options: Any) -> dict[str, Any]:
    """What ``interlock report --json`` prints for ``options`` (since, task, tenant, quality)."""
    capsys.readouterr()
    await print_report(path, as_json=True, **options)
    return dict(json.loads(capsys.readouterr().out))


def same(mine: object, theirs: object, where: str = "") -> None:
    """Equal as JSON, floats to 1e-9 relative (SQLite's sums against the report's fsum)."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict), where
        assert mine.keys() == theirs.keys(), where
        for key in theirs:
            same(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list), where
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float) or isinstance(mine, float):
        assert isinstance(mine, int | float), where
        assert isinstance(theirs, int | float), where
        assert math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-12), (where, mine, theirs)
    else:
        assert mine == theirs, (where, mine, theirs)


def as_json(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


WINDOWS = [
    {},
    {"since": START + 12 * HOUR},
    {"since": START + 12 * HOUR + 1234.5, "task": "extract"},
    {"tenant": "globex"},
    {"since": START + 25 * HOUR, "task": "summarize", "tenant": "acme"},
]


@pytest.mark.parametrize("options", WINDOWS)
async def test_overview_jobs_tenants_and_providers_equal_the_report(
    ledger: Path, capsys: pytest.CaptureFixture[str], options: dict[str, Any]
) -> None:
    """The overview's rollup, the models, spenders, providers and breaker transitions are the report's."""
    report = await report_json(ledger, capsys, **options)
    window = Window(
        since=options.get("since"), until=time.time(), task=options.get("task"), tenant=options.get("tenant")
    )
    with reading(ledger) as conn:
        overview = as_json(overview_data(conn, window).rollup)
        models = as_json(jobs_models_data(conn, window).models)
        spenders = as_json(tenants_data(conn, window, None).spenders)
        providers = providers_data(conn, window, None)
    transitions = report.pop("breaker_transitions")
    for key in ("generated_at", "aliases"):
        report.pop(key)
        overview.pop(key)
    assert overview.pop("models") == []  # the overview leaves the models to their page, compared below
    report_models = report.pop("models")
    assert report["requests"] > 0, "the window must hold figures worth comparing"
    assert report["alerts"], "the window must hold alerts worth comparing"
    same(overview, report)
    same(models, report_models)
    same(spenders, report["spenders"])
    same(as_json(providers.attempts), report["providers"])
    same(as_json(providers.transitions), transitions)


@pytest.mark.parametrize("options", WINDOWS)
async def test_percentiles_by_the_bin_walk_equal_the_reports(
    ledger: Path, capsys: pytest.CaptureFixture[str], options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a big window the percentiles walk one latency bin of the index: still the report's nearest ranks."""
    monkeypatch.setattr(figures, "RANKED_HERE", 0)
    report = await report_json(ledger, capsys, **options)
    window = Window(
        since=options.get("since"), until=time.time(), task=options.get("task"), tenant=options.get("tenant")
    )
    with reading(ledger) as conn:
        models = as_json(figures.model_stats(conn, window))
    assert any(m["ttft_p95_ms"] is not None for m in models)
    same(models, report["models"])


async def test_the_ledger_holds_every_kind_of_alert(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fixture's outlier and spike reach the report, so the comparison above covers every alert kind."""
    kinds = {a["kind"] for a in (await report_json(ledger, capsys))["alerts"]}
    assert kinds == {"degraded_share", "spend_spike", "cost_outlier"}


@pytest.mark.parametrize("options", WINDOWS[:3])
async def test_quality_page_equals_report_quality(
    ledger: Path, capsys: pytest.CaptureFixture[str], options: dict[str, Any]
) -> None:
    """Accept rates, rejects by verifier, unjudged and unparsed verdicts, demotions: the report's ``--quality``."""
    report = await report_json(ledger, capsys, quality=True, since=options.get("since"), task=options.get("task"))
    window = Window(since=options.get("since"), until=time.time(), task=options.get("task"))
    with reading(ledger) as conn:
        mine = as_json(quality_data(conn, window).rollup)
        assert as_json(sql_quality(conn, window)) == mine
    report.pop("generated_at")
    mine.pop("generated_at")
    assert report["judged"] > 0
    assert report["unjudged"] > 0
    assert report["unparsed"] > 0
    same(mine, report)


async def test_buckets_sum_to_the_hours_and_their_p95_is_the_records_own(ledger: Path) -> None:
    """Hour buckets hold the report's hourly calls and spend; each bucket's p95 TTFT is its records' nearest rank."""
    async with SqliteLedgerStore(ledger) as store:
        requests = await store.fetch_requests()
    window = Window(since=None, until=time.time(), bucket_name="hour")
    with reading(ledger) as conn:
        data = overview_data(conn, window)
    assert data.bucket_s == HOUR
    hours = {h.hour_start: h for h in data.rollup.hours}
    for bucket in data.buckets:
        inside = [r for r in requests if hour_of(r.ts) == bucket.start]
        assert bucket.calls == len(inside) == (hours[bucket.start].calls if inside else 0)
        assert bucket.degraded == sum(r.degraded for r in inside)
        assert bucket.ttft_p95_ms == percentile(sorted(r.ttft_ms for r in inside if r.ttft_ms is not None), 95)
    assert sum(b.calls for b in data.buckets) == len(requests)


async def test_histograms_count_each_models_latencies(ledger: Path) -> None:
    """The TTFT histogram of a model counts its requests' first-token times per bin, every one once."""
    async with SqliteLedgerStore(ledger) as store:
        requests = await store.fetch_requests(None, "extract", None)
    with reading(ledger) as conn:
        data = jobs_models_data(conn, Window(since=None, until=time.time(), task="extract"))
    for model, counts in data.ttft.items():
        values = [r.ttft_ms for r in requests if r.model == model and r.ttft_ms is not None]
        expected = [0] * (len(LATENCY_EDGES) + 1)
        for v in values:
            expected[next((i for i, e in enumerate(LATENCY_EDGES) if v < e), len(LATENCY_EDGES))] += 1
        assert counts == expected
        assert sum(counts) == len(values) > 0


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """``app`` on a real uvicorn server on 127.0.0.1:<ephemeral>; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", ws="none", log_config=None,
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        finally:
            server.should_exit = True


async def test_every_page_draws_the_reports_figures_over_http(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each page answers 200 with its charts; the overview shows the report's request count and spend."""
    report = await report_json(ledger, capsys, task="summarize")
    async with serving(dashboard_app(ledger)) as url, httpx.AsyncClient(base_url=url) as client:
        pages = {
            p: await client.get(f"/ui{p}?job=summarize") for p in ("", "/models", "/tenants", "/providers", "/quality")
        }
        one = await client.get("/ui/request/r00077")
        missing = await client.get("/ui/request/no-such-id")
        css = await client.get("/ui/static/style.css")
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert "<svg" in page.text, path
        assert "content-security-policy" in page.headers, path
    overview = pages[""].text
    assert f"{report['requests']:,}" in overview
    assert f"{report['cost_cents']:,.2f}¢" in overview
    models = pages["/models"].text
    for m in report["models"]:
        if m["ttft_p95_ms"] is not None:
            assert f"{m['ttft_p95_ms']:,.0f} ms" in models
    assert one.status_code == 200
    assert "r00077" in one.text
    assert "<svg" in one.text
    assert missing.status_code == 404
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def ledger_indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()


async def test_the_dashboard_adds_no_index_to_the_ledger_and_old_ones_are_dropped(tmp_path: Path) -> None:
    """Every page served leaves the ledger's indexes as its schema made them; migration 12 drops the old dashboard_*."""
    path = tmp_path / "ledger.sqlite"
    async with SqliteLedgerStore(path) as store:
        await store.write(_records(random.Random(7)))
    schema_only = ledger_indexes(path)
    async with serving(dashboard_app(path)) as url, httpx.AsyncClient(base_url=url) as client:
        for page in ("", "/models", "/tenants", "/providers", "/quality", "/request/r00003"):
            assert (await client.get(f"/ui{page}")).status_code == 200, page
    assert ledger_indexes(path) == schema_only
    # A ledger an earlier dashboard indexed (at migration 11, with its dashboard_* indexes) sheds them on open.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE INDEX dashboard_requests_ttft ON requests (task, model, ttft_ms, ts, tenant)")
    conn.execute("CREATE INDEX dashboard_requests_cost ON requests (task, cost_cents)")
    conn.execute("DELETE FROM schema_version WHERE version >= 12")
    conn.close()
    async with SqliteLedgerStore(path):
        pass
    assert ledger_indexes(path) == schema_only


async def test_keys_sessions_and_a_tenants_own_view(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No key: the sign-in page (401). The admin key sees all; a gateway key only its tenant; the key stays secret."""
    acme = await report_json(ledger, capsys, tenant="acme")
    everyone = await report_json(ledger, capsys)
    app = dashboard_app(ledger, virtual_keys=KEYS, admin_key=ADMIN)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        anonymous = await client.get("/ui/models?job=extract")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/ui/login?next=%2Fui%2Fmodels%3Fjob%3Dextract"
        anonymous = await client.get(anonymous.headers["location"])
        assert anonymous.status_code == 200
        assert 'name="key"' in anonymous.text
        assert (await client.get("/ui", headers={"authorization": "Bearer sk-wrong-key-0000000000"})).status_code == 401
        admin = await client.get("/ui", headers={"authorization": f"Bearer {ADMIN}"})
        assert admin.status_code == 200
        assert f"{everyone['requests']:,}" in admin.text

        refused = await client.post("/ui/login", data={"key": "sk-nope", "next": "/ui"})
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        signed = await client.post("/ui/login", data={"key": ACME_KEY, "next": "//evil.example/ui"})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/ui"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/ui" in cookie
        assert ACME_KEY.lower() not in cookie
        mine = await client.get("/ui?tenant=globex")  # a tenant key cannot ask for another tenant
        assert mine.status_code == 200
        assert "tenant acme" in mine.text
        assert f"{acme['requests']:,}" in mine.text
        assert ACME_KEY not in mine.text
        assert (await client.post("/ui/logout")).status_code == 303
        assert (await client.get("/ui")).status_code == 303


async def test_a_tenant_key_cannot_open_another_tenants_request(ledger: Path) -> None:
    """The request page of a globex request is a 404 for acme's key, and a 200 for the admin key."""
    async with SqliteLedgerStore(ledger) as store:
        globex = (await store.fetch_requests(None, None, "globex"))[0].request_id
    app = dashboard_app(ledger, virtual_keys=KEYS, admin_key=ADMIN)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get(f"/ui/request/{globex}", headers={"x-api-key": ACME_KEY})).status_code == 404
        assert (await client.get(f"/ui/request/{globex}", headers={"x-api-key": ADMIN})).status_code == 200


@pytest.mark.parametrize(
    ("query", "problem"),
    [("since=soon", "since='soon'"), ("since=-2h", "since='-2h'"), ("bucket=week", "bucket='week'")],
)
async def test_a_bad_filter_is_a_400_naming_it(ledger: Path, query: str, problem: str) -> None:
    """A window or bucket the dashboard cannot read is refused with its parameter and value."""
    async with serving(dashboard_app(ledger)) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.get(f"/ui?{query}")
    assert answer.status_code == 400
    assert problem.replace("'", "&#x27;") in answer.text


async def test_filters_narrow_every_figure(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``since``, ``job`` and ``tenant`` in the URL give the report's figures for that window."""
    report = await report_json(ledger, capsys, since=time.time() - 6 * HOUR, task="classify", tenant="initech")
    async with serving(dashboard_app(ledger)) as url, httpx.AsyncClient(base_url=url) as client:
        page = (await client.get("/ui?since=6h&job=classify&tenant=initech&bucket=hour")).text
    cards = re.findall(r'<div class="value">([^<]+)</div>', page)
    assert cards[0] == f"{report['requests']:,}"
    assert report["requests"] < 900
    assert '<option value="classify" selected>' in page


async def test_the_gateway_serves_the_dashboard_with_live_health(tmp_path: Path) -> None:
    """``interlock serve``'s app answers ``/ui`` for its virtual keys, over its own ledger, with live breakers."""
    path = tmp_path / "gw.sqlite"
    async with interlock.open(default_config(), ledger_path=path) as door:
        app = build_app(door, virtual_keys=KEYS, dashboard_ledger=path, admin_key=ADMIN)
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {"model": "default", "messages": [{"role": "user", "content": "hello"}]}
            answered = await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {ACME_KEY}"}
            )
            assert answered.status_code == 200
            await door.flush()
            assert (await client.get("/ui")).status_code == 303
            page = await client.get("/ui/providers", headers={"authorization": f"Bearer {ACME_KEY}"})
            overview = await client.get("/ui", headers={"authorization": f"Bearer {ACME_KEY}"})
    assert page.status_code == 200
    assert "healthy" in page.text
    cards = re.findall(r'<div class="value">([^<]+)</div>', overview.text)
    assert cards[0] == "1"


"""The dashboard in a real browser: headless Chromium loads every page over a demo ledger.

``interlock demo`` writes the ledger (the simulated fleet, its scripted outage: fallbacks, hedges,
a breaker trip); ``interlock dashboard`` serves it on a free port, with an admin key so that the
browser signs in through the form and holds the session cookie. One browser then opens every
page, checks that its charts are drawn (SVG marks present), that nothing was logged as a console
error or raised as a page error, and that no request left the dashboard's own origin; it saves
a screenshot of each page under the test's temporary folder; with ``INTERLOCK_UPDATE_SCREENSHOT=1``
it also copies the overview's to ``docs/images/dashboard-overview.png``, the README's picture.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN = "adm-browser-0123456789abcdef"
README_IMAGE = Path(__file__).resolve().parent.parent / "docs" / "images" / "dashboard-overview.png"
PAGES = {  # path -> (file name, the least number of chart marks it must draw)
    "/ui": ("overview", 10),
    "/ui/models": ("models", 20),
    "/ui/tenants": ("tenants", 2),
    "/ui/providers": ("providers", 5),
    "/ui/quality": ("quality", 2),
}
MARKS = "svg.chart rect.bar, svg.chart polyline, svg.chart rect.span, svg.spark polyline"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
    ),
]


def _interlock(*args: str) -> list[str]:
    return [sys.executable, "-m", "interlock.actors.cli._main", *args]


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledger ``interlock demo`` writes."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    done = subprocess.run(_interlock("demo", "--ledger", str(path)), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def dashboard_url(demo_ledger: Path) -> Iterator[str]:
    """``interlock dashboard`` over the demo ledger on a free port; yields the URL it prints."""
    env = {**os.environ, "INTERLOCK_ADMIN_KEY": ADMIN}
    command = _interlock("dashboard", "--ledger", str(demo_ledger), "--port", "0")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # the first line names the URL, once the server listens
            found = re.search(r"(http://127\.0\.0\.1:\d+)/ui", line)
            assert found, f"no URL in {line!r}"
            yield found[1]
        finally:
            process.terminate()
            process.wait(timeout=10)


def hedged_request(ledger: Path) -> str:
    """A request of the demo that was hedged and made more than one attempt."""
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        row = conn.execute("SELECT request_id FROM requests WHERE hedged = 1 AND attempts > 1 LIMIT 1").fetchone()
    assert row is not None, "the demo hedges some requests"
    return str(row[0])


async def test_every_page_draws_its_charts_in_chromium(dashboard_url: str, demo_ledger: Path, tmp_path: Path) -> None:
    """Sign in, open every page and a request from the overview: charts drawn, no errors, nothing off-origin."""
    from playwright.async_api import async_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    problems: list[str] = []
    foreign: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith((dashboard_url, "data:")) else foreign.append(r.url))

            await page.goto(f"{dashboard_url}/ui")
            assert "/ui/login" in page.url  # no session yet: the sign-in form
            await page.fill("input[name=key]", ADMIN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{dashboard_url}/ui")
            for path, (name, least) in PAGES.items():
                if path != "/ui":
                    await page.goto(f"{dashboard_url}{path}")
                assert await page.title() != "Sign in \u00b7 interlock", path
                marks = await page.locator(MARKS).count()
                assert marks >= least, (path, marks)
                if name == "providers":  # the demo's outage trips a breaker: drawn open on the timeline
                    assert await page.locator("svg.timeline rect.span.state-open").count() >= 1
                await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            await page.goto(f"{dashboard_url}/ui")
            await page.click("table.data a[href^='/ui/request/']")
            await page.wait_for_url(re.compile(r".*/ui/request/\w+"))
            assert await page.locator("h2", has_text="Attempts on a time axis").count() == 1
            await page.goto(f"{dashboard_url}/ui/request/{hedged_request(demo_ledger)}")
            assert await page.locator("svg.timeline rect.span").count() >= 2  # the first try and its hedge
            await page.screenshot(path=str(shots / "request.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []
    assert foreign == []
    expected = [f"{name}.png" for name, _ in PAGES.values()] + ["request.png"]
    assert sorted(p.name for p in shots.iterdir()) == sorted(expected)
    assert (shots / "overview.png").stat().st_size > 10_000
    if os.environ.get("INTERLOCK_UPDATE_SCREENSHOT"):  # the README's picture, refreshed on request only
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "overview.png", README_IMAGE)

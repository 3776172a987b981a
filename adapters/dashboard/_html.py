"""The dashboard's page frame and the small pieces every page is built of: cards, tables, numbers.

Pages are plain HTML strings, escaped here (``esc``) and nowhere trusted: every ledger value that
reaches a page (job, tenant and model names, error details, verdicts) passes through ``esc``.
Numbers are shown as the report shows them: cents with four decimals below a cent, rates as
percentages with one decimal, latencies in whole milliseconds, times in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Final

from interlock.adapters.dashboard._window import BUCKETS, WINDOWS, Window

BASE: Final = "/ui"
DASH: Final = "—"
PAGES: Final = (
    ("", "Overview"),
    ("/models", "Jobs \u00d7 models"),
    ("/tenants", "Tenants"),
    ("/providers", "Providers"),
    ("/quality", "Quality"),
)


def esc(value: object) -> str:
    """``value`` as text safe inside HTML, quotes included."""
    return escape(str(value), quote=True)


def cents(value: float) -> str:
    """A cost in cents, precise enough for sub-cent calls."""
    return f"{value:,.2f}¢" if abs(value) >= 1 else f"{value:.4f}¢"


def cents_tick(value: float) -> str:
    """A cost on an axis: three significant digits are enough to read a scale."""
    return f"{value:.3g}\u00a2"


def ms_tick(value: float) -> str:
    """A latency on an axis: milliseconds below a second, seconds above."""
    return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.0f} ms"


def pct(rate: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return DASH if rate is None else f"{rate * 100:.1f}%"


def ms(value: float | None) -> str:
    """A latency in whole milliseconds."""
    return DASH if value is None else f"{value:,.0f} ms"


def utc(ts: float) -> str:
    """An epoch time as a UTC second."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def card(title: str, value: str, note: str = "") -> str:
    """One headline figure."""
    extra = f'<div class="note">{esc(note)}</div>' if note else ""
    return f'<div class="card"><div class="label">{esc(title)}</div><div class="value">{esc(value)}</div>{extra}</div>'


def panel(title: str, body: str, *, wide: bool = False, note: str = "") -> str:
    """A titled section holding a chart or a table; ``body`` is HTML already."""
    extra = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<section class="panel{" wide" if wide else ""}"><h2>{esc(title)}</h2>{extra}{body}</section>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1, cls: str = "") -> str:
    """A table whose cells are HTML already (escape them with ``esc``); columns from ``numeric_from`` align right."""
    head = "".join(f"<th{' class=num' if i >= numeric_from else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">nothing in this window</td></tr>'
    return f'<table class="data {cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def request_link(request_id: str, window: Window) -> str:
    """A link to the request page of ``request_id``."""
    return f'<a class="mono" href="{BASE}/request/{esc(request_id)}{esc(window.query())}">{esc(request_id[:18])}</a>'


def _options(values: Iterable[str], chosen: str | None, everything: str) -> str:
    items = [f'<option value=""{"" if chosen else " selected"}>{esc(everything)}</option>']
    items += [f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v)}</option>' for v in values]
    return "".join(items)


def filters(path: str, window: Window, jobs: Sequence[str], tenants: Sequence[str], *, tenant_fixed: bool) -> str:
    """The filter bar: window, job, tenant and bucket, sent as a GET form to the same page."""
    since = "".join(
        f'<option value="{w}"{" selected" if w == window.since_text else ""}>'
        f"{'all time' if w == 'all' else 'last ' + w}</option>"
        for w in (*WINDOWS, *(() if window.since_text in WINDOWS else (window.since_text,)))
    )
    bucket = "".join(
        f'<option value="{b}"{" selected" if b == window.bucket_name else ""}>{b}</option>' for b in ("auto", *BUCKETS)
    )
    tenant = (
        f'<span class="fixed">tenant {esc(window.tenant)}</span>'
        if tenant_fixed
        else f'<label>tenant <select name="tenant">{_options(tenants, window.tenant, "all tenants")}</select></label>'
    )
    return (
        f'<form class="filters" method="get" action="{esc(BASE + path)}">'
        f'<label>window <select name="since">{since}</select></label>'
        f'<label>job <select name="job">{_options(jobs, window.task, "all jobs")}</select></label>'
        f"{tenant}"
        f'<label>bucket <select name="bucket">{bucket}</select></label>'
        '<button type="submit">Apply</button></form>'
    )


def page(title: str, path: str, window: Window, body: str, *, filter_bar: str) -> str:
    """A whole page: head, navigation (keeping the filters), the filter bar and ``body``."""
    query = esc(window.query())
    nav = "".join(
        f'<a href="{BASE}{p}{query}"{" class=current" if p == path else ""}>{esc(name)}</a>' for p, name in PAGES
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · interlock</title>"
        f'<link rel="stylesheet" href="{BASE}/static/style.css"><link rel="icon" href="data:,"></head><body>'
        f'<header><a class="brand" href="{BASE}{query}">interlock</a><nav>{nav}</nav>'
        f'<form class="lookup" method="get" action="{BASE}/request"><input name="id" placeholder="request id"'
        ' aria-label="request id"></form></header>'
        f'<main><div class="titlebar"><h1>{esc(title)}</h1>{filter_bar}</div>{body}</main>'
        f"<footer>read-only view of the ledger · drawn {esc(utc(window.until))} · figures as "
        "<code>interlock report --json</code></footer></body></html>"
    )


def message_page(title: str, text: str, *, form: str = "") -> str:
    """A bare page for a login form or an error, with the stylesheet."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<title>{esc(title)} · interlock</title><link rel="stylesheet" href="{BASE}/static/style.css">'
        '<link rel="icon" href="data:,"></head><body class="bare">'
        f'<div class="box"><div class="brand">interlock</div><h1>{esc(title)}</h1><p>{esc(text)}</p>{form}</div>'
        "</body></html>"
    )

"""The dashboard's HTTP face: the pages under ``/ui``, its stylesheet, and signing in.

::

    routes = dashboard_routes("interlock.sqlite", virtual_keys=keys, admin_key=admin)  # into a Starlette app
    app = dashboard_app("interlock.sqlite")  # on its own: ``interlock dashboard``

Pages: ``/ui`` (overview), ``/ui/models``, ``/ui/tenants``, ``/ui/providers``, ``/ui/quality``,
``/ui/request/{id}``; every page takes ``since``, ``job``, ``tenant`` and ``bucket`` (``_window``).
Each page is read in a worker thread, in one read snapshot of the ledger (``_summary``), so a big
ledger never stalls the event loop the gateway serves on. The first page view adds the
dashboard's indexes to the ledger file (``_ledger_sql``) and sums the ledger into the in-memory
hourly summaries; later views add only the new rows. Who may look is ``_access``'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, quote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from interlock._clock import Clock, RealClock
from interlock.adapters.dashboard import _pages as pages
from interlock.adapters.dashboard import _pages_ops as ops
from interlock.adapters.dashboard import _pages_request as req
from interlock.adapters.dashboard._access import COOKIE, SESSION_S, Access, Viewer
from interlock.adapters.dashboard._html import BASE, esc, filters, message_page, page
from interlock.adapters.dashboard._ledger_sql import LedgerUnreadable, check_ledger
from interlock.adapters.dashboard._summary import DISTINCT_COLUMNS, Summary
from interlock.adapters.dashboard._window import BadFilter, Window, read_window
from interlock.adapters.gateway._edge import VirtualKey
from interlock.policies._budget import BudgetConfig

HealthSource = Callable[[], Awaitable[Mapping[str, ops.Health]]]
_STYLE: Final = Path(__file__).parent / "static" / "style.css"
_HEADERS: Final = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_LOGIN_FORM: Final = (
    f'<form method="post" action="{BASE}/login" class="login"><input type="hidden" name="next" value="{{next}}">'
    '<input type="password" name="key" placeholder="API key" aria-label="API key" autocomplete="off" autofocus>'
    "<button type=submit>Sign in</button></form>"
)


class _NoSuchRequest(LookupError):
    """The request page's id is not in the ledger (or not of the viewer's tenant)."""


PageBody = Callable[[sqlite3.Connection, Window], tuple[str, str]]


class Dashboard:
    """One dashboard over one ledger file: its pages, its keys, and the live health it may show."""

    def __init__(
        self,
        ledger: str | Path,
        access: Access,
        *,
        budgets: BudgetConfig | None = None,
        health: HealthSource | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.ledger = Path(ledger)
        self.access = access
        self.budgets = budgets
        self.health = health
        self.clock = clock or RealClock()
        self._summary: Summary | None = None
        self._prepare_lock = anyio.Lock()

    async def _ready(self) -> Summary:
        async with self._prepare_lock:
            if self._summary is None:
                await anyio.to_thread.run_sync(check_ledger, self.ledger)
                self._summary = Summary(self.ledger)
            return self._summary

    def routes(self) -> list[BaseRoute]:
        """Every route of the dashboard, under ``/ui``."""
        view = self._view
        return [
            Route(BASE, view(self._overview), methods=["GET"]),
            Route(f"{BASE}/models", view(self._models), methods=["GET"]),
            Route(f"{BASE}/tenants", view(self._tenants), methods=["GET"]),
            Route(f"{BASE}/providers", self._providers_page, methods=["GET"]),
            Route(f"{BASE}/quality", view(self._quality), methods=["GET"]),
            Route(f"{BASE}/request", self._lookup, methods=["GET"]),
            Route(f"{BASE}/request/{{request_id}}", self._request_page, methods=["GET"]),
            Route(f"{BASE}/static/style.css", self._style, methods=["GET"]),
            Route(f"{BASE}/login", self._login, methods=["GET", "POST"]),
            Route(f"{BASE}/logout", self._logout, methods=["POST"]),
        ]

    # The pages: each reads its data and draws it in one worker-thread trip.

    def _overview(self, conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
        return "Overview", pages.render_overview(pages.overview_data(conn, window), window)

    def _models(self, conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
        return "Jobs \u00d7 models", pages.render_jobs_models(pages.jobs_models_data(conn, window), window)

    def _tenants(self, conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
        return "Tenants and callers", pages.render_tenants(pages.tenants_data(conn, window, self.budgets), window)

    def _quality(self, conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
        return "Quality", ops.render_quality(ops.quality_data(conn, window), window)

    async def _providers_page(self, request: Request) -> Response:
        live: Mapping[str, ops.Health] | None = None
        if self.health is not None:
            with anyio.move_on_after(5.0):
                live = await self.health()

        def draw(conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
            return "Providers", ops.render_providers(ops.providers_data(conn, window, live), window)

        return await self._view(draw)(request)

    def _view(self, body: PageBody) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = self.access.viewer(request)
            if viewer is None:
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if self.access.sent_key(request):  # a program with a wrong key: refused, not sent to a form
                    return _login_page(here, 401, "That key is not a dashboard key.")
                return RedirectResponse(f"{BASE}/login?{urlencode({'next': here})}", status_code=303)
            try:
                window = read_window(request.query_params, self.clock.wall(), tenant=viewer.tenant)
                summary = await self._ready()
                html = await anyio.to_thread.run_sync(self._draw, summary, body, window, request.url.path, viewer)
            except BadFilter as exc:
                return _html(message_page("Bad filter", str(exc)), 400)
            except _NoSuchRequest as exc:
                return _html(message_page("No such request", f"No request {exc} in this ledger."), 404)
            except LedgerUnreadable as exc:
                return _html(message_page("No ledger to show", str(exc)), 503)
            return _html(html, 200)

        return endpoint

    def _draw(self, summary: Summary, body: PageBody, window: Window, path: str, viewer: Viewer) -> str:
        with summary.reading() as conn:
            title, html = body(conn, window)
            jobs = distinct(conn, "task")
            tenants = [] if viewer.tenant else distinct(conn, "tenant")
        here = path.removeprefix(BASE)
        bar = filters(here, window, jobs, tenants, tenant_fixed=viewer.tenant is not None)
        return page(title, here, window, html, filter_bar=bar)

    async def _lookup(self, request: Request) -> Response:
        wanted = request.query_params.get("id", "").strip()
        return RedirectResponse(f"{BASE}/request/{quote(wanted, safe='')}" if wanted else BASE, status_code=303)

    async def _request_page(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]

        def draw(conn: sqlite3.Connection, window: Window) -> tuple[str, str]:
            data = req.request_data(conn, request_id)
            if data is None or (window.tenant is not None and data.request["tenant"] != window.tenant):
                raise _NoSuchRequest(request_id)
            return "Request", req.render_request(data, window)

        return await self._view(draw)(request)

    async def _style(self, request: Request) -> Response:
        css = await anyio.Path(_STYLE).read_bytes()
        return Response(css, media_type="text/css", headers={"cache-control": "max-age=300"})

    async def _login(self, request: Request) -> Response:
        if request.method == "GET":
            return _login_page(request.query_params.get("next", BASE), 200)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = form.get("key", [""])[0].strip()
        target = _local(form.get("next", [BASE])[0])
        viewer = self.access.viewer_for_key(key)
        if viewer is None:
            return _login_page(target, 401, "That key is not a dashboard key.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.access.start_session(viewer),
            max_age=int(SESSION_S),
            path=BASE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def _logout(self, request: Request) -> Response:
        self.access.end_session(request)
        response = RedirectResponse(f"{BASE}/login", status_code=303)
        response.delete_cookie(COOKIE, path=BASE)
        return response


def distinct(conn: sqlite3.Connection, column: str) -> list[str]:
    """The distinct values of a ``requests`` column the summary keeps (``DISTINCT_COLUMNS``), in order."""
    if column not in DISTINCT_COLUMNS:
        raise ValueError(f"no distinct values kept for {column!r}")
    return [str(v) for (v,) in conn.execute(f"SELECT v FROM seen_{column} ORDER BY v")]


def _local(target: str) -> str:
    """``target`` when it is a dashboard path of this server; the overview otherwise (no open redirect)."""
    return target if target.startswith(BASE) and not target.startswith("//") and "\\" not in target else BASE


def _html(body: str, status: int) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _login_page(next_path: str, status: int, problem: str = "") -> HTMLResponse:
    text = problem or "Sign in with the admin key or a gateway key: a gateway key shows its own tenant."
    return _html(message_page("Sign in", text, form=_LOGIN_FORM.replace("{next}", esc(_local(next_path)))), status)


def dashboard_routes(
    ledger: str | Path,
    *,
    virtual_keys: Mapping[str, VirtualKey] | None = None,
    admin_key: str | None = None,
    budgets: BudgetConfig | None = None,
    health: HealthSource | None = None,
    clock: Clock | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes over ``ledger``, for a gateway app (see ``_access`` for the keys)."""
    access = Access(virtual_keys, admin_key, clock or RealClock())
    return Dashboard(ledger, access, budgets=budgets, health=health, clock=clock).routes()


def dashboard_app(
    ledger: str | Path,
    *,
    virtual_keys: Mapping[str, VirtualKey] | None = None,
    admin_key: str | None = None,
    budgets: BudgetConfig | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The dashboard alone over ``ledger``: its routes, and ``/`` sending the browser to ``/ui``."""
    routes = dashboard_routes(ledger, virtual_keys=virtual_keys, admin_key=admin_key, budgets=budgets, clock=clock)

    async def home(request: Request) -> Response:
        return RedirectResponse(BASE, status_code=303)

    return Starlette(routes=[Route("/", home, methods=["GET"]), *routes])

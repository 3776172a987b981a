"""Who may look at the dashboard: the gateway's virtual keys, an admin key, and browser sessions.

A browser cannot send ``Authorization`` when it follows a link, so the dashboard signs people in
once: ``POST /ui/login`` with the key in a form field (never in a URL, where access logs,
history and ``Referer`` headers would keep it) answers with an ``HttpOnly``, ``SameSite=Strict``
session cookie scoped to ``/ui`` (``Secure`` on https). The session is a random token held in
this process's memory for ``SESSION_S`` seconds; the key itself is never stored, logged or sent
back. Programs send the key as ``Authorization: Bearer <key>`` or ``x-api-key``, as to the gateway.

What a key shows:

- the admin key (``INTERLOCK_ADMIN_KEY``, or ``admin_key=``): every tenant;
- a virtual key of the gateway: its own tenant only (the tenant filter is fixed to it);
- with no virtual keys and no admin key, everyone sees everything, as the gateway serves everyone
  as tenant ``default`` then (``interlock dashboard`` binds to 127.0.0.1 by default).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final

import msgspec
from starlette.requests import Request

from interlock._clock import Clock
from interlock.adapters.gateway._edge import VirtualKey

ADMIN_ENV: Final = "INTERLOCK_ADMIN_KEY"
COOKIE: Final = "interlock_ui"
SESSION_S: Final = 12 * 3600.0
_MAX_SESSIONS: Final = 10_000  # past this, the oldest sessions are forgotten first


class Viewer(msgspec.Struct, frozen=True):
    """Who is looking: ``tenant`` None sees every tenant; otherwise that tenant only."""

    tenant: str | None


EVERYONE: Final = Viewer(None)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Access:
    """The dashboard's keys and its signed-in sessions."""

    def __init__(self, virtual_keys: Mapping[str, VirtualKey] | None, admin_key: str | None, clock: Clock) -> None:
        self._clock = clock
        self._admin = None if not admin_key else _digest(admin_key)
        self._keys = {} if virtual_keys is None else {_digest(k): v.tenant for k, v in virtual_keys.items()}
        self.open = virtual_keys is None and not admin_key
        self._sessions: dict[str, tuple[Viewer, float]] = {}

    def viewer_for_key(self, key: str) -> Viewer | None:
        """The viewer a key stands for; None for a key that is neither the admin key nor a virtual key."""
        if not key:
            return None
        digest = _digest(key)
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            return EVERYONE
        tenant = self._keys.get(digest)
        return None if tenant is None else Viewer(tenant)

    @staticmethod
    def sent_key(request: Request) -> str:
        """The key ``request`` carries in ``Authorization: Bearer`` or ``x-api-key``; "" when none."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return (token.strip() if scheme.lower() == "bearer" else "") or request.headers.get("x-api-key", "").strip()

    def viewer(self, request: Request) -> Viewer | None:
        """Who sent ``request``: by its key header or its session cookie; None when nobody known."""
        if self.open:
            return EVERYONE
        key = self.sent_key(request)
        if key:
            return self.viewer_for_key(key)
        session = request.cookies.get(COOKIE, "")
        found = self._sessions.get(session)
        if found is None:
            return None
        viewer, expires = found
        if expires <= self._clock.wall():
            del self._sessions[session]
            return None
        return viewer

    def start_session(self, viewer: Viewer) -> str:
        """A new session token for ``viewer``, good for ``SESSION_S`` seconds."""
        if len(self._sessions) >= _MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda s: self._sessions[s][1])
            del self._sessions[oldest]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (viewer, self._clock.wall() + SESSION_S)
        return token

    def end_session(self, request: Request) -> None:
        """Forget the session ``request`` carries, if any."""
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)


def admin_key_from(environ: Mapping[str, str]) -> str | None:
    """The admin key the environment sets (``INTERLOCK_ADMIN_KEY``), None when unset or empty."""
    return environ.get(ADMIN_ENV) or None

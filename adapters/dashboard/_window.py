"""What a dashboard page is asked to show: the time window, the job and tenant filters, the bucket.

Every page reads the same query parameters::

    ?since=2h&job=cheap_bulk&tenant=acme&bucket=hour

``since`` is a window like the report's ``--since`` (``90s``, ``15m``, ``2h``, ``1d``) or ``all``
(the default: the whole ledger, as ``interlock report`` without ``--since``). The window is
``since <= ts <= until`` with ``until`` the moment the page is drawn. ``bucket`` is ``auto``
(the default), ``second``, ``minute``, ``hour`` or ``day``; ``auto`` takes the smallest of those
that draws the window's records in at most ``MAX_BUCKETS`` columns, so a demo ledger that spans
seconds is drawn in seconds and a month of traffic in days. Buckets start on whole UTC units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

import msgspec

BUCKETS: Final[dict[str, float]] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
MAX_BUCKETS: Final = 72
WINDOWS: Final = ("all", "15m", "1h", "6h", "1d", "7d", "30d")
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class BadFilter(ValueError):
    """A query parameter the dashboard cannot read; the message names the parameter and the value."""


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """The records a page covers: ``since <= ts <= until``, of one job and one tenant when set."""

    since: float | None
    until: float
    task: str | None = None
    tenant: str | None = None
    since_text: str = "all"
    bucket_name: str = "auto"

    def where(self, alias: str = "") -> tuple[str, list[float | str]]:
        """The SQL condition and its parameters for this window over a ``requests`` or ``attempts`` table."""
        col = f"{alias}." if alias else ""
        terms = [f"{col}ts <= ?"]
        params: list[float | str] = [self.until]
        if self.since is not None:
            terms.append(f"{col}ts >= ?")
            params.append(self.since)
        if self.task is not None:
            terms.append(f"{col}task = ?")
            params.append(self.task)
        if self.tenant is not None:
            terms.append(f"{col}tenant = ?")
            params.append(self.tenant)
        return " AND ".join(terms), params

    def query(self, **changes: str | None) -> str:
        """This window's query string, with ``changes`` applied (None drops a parameter)."""
        values: dict[str, str | None] = {
            "since": None if self.since_text == "all" else self.since_text,
            "job": self.task,
            "tenant": self.tenant,
            "bucket": None if self.bucket_name == "auto" else self.bucket_name,
        }
        values.update(changes)
        kept = {k: v for k, v in values.items() if v}
        return f"?{urlencode(kept)}" if kept else ""


def since_seconds(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` (or a bare number of seconds) as seconds; ``BadFilter`` else."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise BadFilter(f"since={text!r}: expected a window like 90s, 15m, 2h, 1d or all") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadFilter(f"since={text!r}: the window must be a positive length of time")
    return seconds


def read_window(params: Mapping[str, str], now: float, *, tenant: str | None = None) -> Window:
    """The window a page's query parameters ask for; ``tenant`` (a tenant key's own) overrides theirs."""
    since_text = params.get("since") or "all"
    since = None if since_text == "all" else now - since_seconds(since_text)
    bucket = params.get("bucket") or "auto"
    if bucket != "auto" and bucket not in BUCKETS:
        raise BadFilter(f"bucket={bucket!r}: expected auto, {', '.join(BUCKETS)}")
    return Window(
        since=since,
        until=now,
        task=params.get("job") or None,
        tenant=tenant or params.get("tenant") or None,
        since_text=since_text,
        bucket_name=bucket,
    )


def bucket_seconds(window: Window, first: float | None, last: float | None) -> float:
    """The bucket width for ``window`` whose records span ``first`` to ``last`` (epoch seconds)."""
    if window.bucket_name != "auto":
        return BUCKETS[window.bucket_name]
    if first is None or last is None:
        return BUCKETS["hour"]
    for size in BUCKETS.values():
        if math.floor(last / size) - math.floor(first / size) < MAX_BUCKETS:
            return size
    return BUCKETS["day"]


def bucket_label(size: float) -> str:
    """The name of a bucket width: ``second``, ``minute``, ``hour`` or ``day``."""
    return next((name for name, s in BUCKETS.items() if s == size), f"{size:g}s")

"""Retry hints from HTTP headers: ``retry-after-ms``, ``retry-after`` seconds or HTTP-date."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def parse_retry_after(headers: Mapping[str, str], now_wall: float | None = None) -> float | None:
    """Seconds to wait before retrying, or None; ``now_wall`` (epoch) resolves an HTTP-date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    if now_wall is None:
        return None
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - now_wall)

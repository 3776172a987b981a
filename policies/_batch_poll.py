"""How often a submitted provider batch is polled: a back-off from ``first_s`` up to ``max_s``.

A batch takes minutes to hours; polling it every second would only spend requests against the
provider's rate limit, and polling it hourly would leave finished work waiting. The delay
doubles from ``first_s`` to ``max_s``; ``timeout_s`` bounds the whole wait (the providers'
24-hour window, and an hour for the results to be written). Pure: the caller owns the clock.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["BatchPolling", "poll_delay"]


class BatchPolling(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds before the first poll, the factor between polls, the longest gap, the whole wait."""

    first_s: float = 2.0
    factor: float = 2.0
    max_s: float = 60.0
    timeout_s: float = 25 * 3600.0

    def __post_init__(self) -> None:
        for name in ("first_s", "max_s", "timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor must be at least 1, got {self.factor!r}")


def poll_delay(polls: int, polling: BatchPolling) -> float:
    """The wait before poll number ``polls + 1`` (``polls`` already made), in seconds."""
    if polls <= 0:
        return min(polling.first_s, polling.max_s)
    # Past the cap the power only grows: stop multiplying once it is reached (no float overflow).
    steps = min(polls, 64)
    return min(polling.first_s * polling.factor**steps, polling.max_s)

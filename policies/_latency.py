"""A rolling window of latency samples (TTFT) with percentiles on demand.

The provider actor owns one window per provider and feeds it every first-token latency; the
hedge delay reads its p95. Inserting is O(1) into a fixed ring;
a percentile sorts a copy of at most ``capacity`` floats, which is cheap at the few hundred
samples a window holds and is only paid when someone asks.

Units are the caller's: interlock stores seconds, the unit of ``Clock.now()``.
"""

from __future__ import annotations

import math


class RollingLatency:
    """The last ``capacity`` latency samples in a ring; percentiles use the nearest-rank method.

    Nearest rank always returns a sample that was observed, never an interpolation between
    two, so a p95 hedge delay is a latency some call really had.
    """

    __slots__ = ("_capacity", "_next", "_samples")

    def __init__(self, capacity: int = 200) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._samples: list[float] = []
        self._next = 0

    @property
    def capacity(self) -> int:
        """How many samples the window keeps."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: float) -> None:
        """Record one latency; the oldest falls out once the window is full."""
        if not math.isfinite(sample) or sample < 0:
            raise ValueError(f"a latency must be a finite number >= 0, got {sample!r}")
        if len(self._samples) < self._capacity:
            self._samples.append(sample)
        else:
            self._samples[self._next] = sample
        self._next = (self._next + 1) % self._capacity

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0 < q <= 100) by nearest rank, or None with no samples."""
        return _nearest_rank(sorted(self._samples), q)

def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not 0 < q <= 100:
        raise ValueError(f"a percentile must be in (0, 100], got {q}")
    if not ordered:
        return None
    rank = math.ceil(q * len(ordered) / 100)  # multiply first: 95 * 20 / 100 is exactly 19
    return ordered[max(rank, 1) - 1]

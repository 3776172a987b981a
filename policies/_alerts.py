"""The ``[alerts]`` section: the report's alert thresholds and the demotion rule's settings, with their bounds.

::

    [alerts]
    degraded_threshold = 0.3    # a task is flagged when MORE than this share of its calls was degraded
    outlier_factor = 10.0       # a call costing more than this times its task's other calls' mean
    spike_factor = 3.0          # an hour spending more than this times its trailing hours' mean
    trailing_hours = 24         # the trailing hours of that mean
    spike_min_hours = 3         # the fewest trailing hours a spike needs

    [alerts.demotion]
    min_judged = 20             # judged attempts each model needs before it is compared
    margin = 0.15               # the least gap in accept rate (0.15 = 15 points)
    confidence = 0.95           # the two-proportion z-test's two-sided confidence

The defaults are those of ``policies._rollup.rollup`` and ``policies._quality.quality_rollup``.
``interlock report`` reads them from ``--config`` and lets flags override any of them
(``with_overrides``); what a report used is echoed in its JSON (``thresholds``, ``settings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec


class DemotionRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a model is a demotion candidate (see ``policies._quality``): sample size, gap, confidence."""

    min_judged: int = 20
    margin: float = 0.15
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.min_judged < 1:
            raise ValueError("min_judged must be at least 1")
        if not 0 <= self.margin <= 1:
            raise ValueError("margin must be between 0 and 1 (a gap in accept rate: 0.15 is 15 points)")
        if not 0 < self.confidence < 1:
            raise ValueError("confidence must be between 0 and 1, exclusive (0.95 for 95%)")

    def as_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``quality_rollup`` these settings stand for."""
        return msgspec.structs.asdict(self)


class AlertsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The report's alert thresholds (``policies._rollup``'s module docstring defines each alert)."""

    degraded_threshold: float = 0.3
    outlier_factor: float = 10.0
    spike_factor: float = 3.0
    trailing_hours: int = 24
    spike_min_hours: int = 3
    demotion: DemotionRule = msgspec.field(default_factory=DemotionRule)

    def __post_init__(self) -> None:
        if not 0 <= self.degraded_threshold <= 1:
            raise ValueError("degraded_threshold must be between 0 and 1 (a share of a task's calls)")
        for name in ("outlier_factor", "spike_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0 (a multiple of a mean)")
        if self.trailing_hours < 1:
            raise ValueError("trailing_hours must be at least 1")
        if not 1 <= self.spike_min_hours <= self.trailing_hours:
            raise ValueError("spike_min_hours must be at least 1 and at most trailing_hours")

    def as_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``rollup`` these thresholds stand for (the demotion rule left out)."""
        fields = msgspec.structs.asdict(self)
        del fields["demotion"]
        return fields


def with_overrides(alerts: AlertsConfig, overrides: Mapping[str, Any]) -> AlertsConfig:
    """``alerts`` with the given fields replaced (``None`` values ignored), checked again; ValueError if out of range.

    Keys are ``AlertsConfig`` fields or ``demotion.<field>``; the command line's flags map to them.
    """
    top: dict[str, Any] = {}
    demotion: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (demotion if section == "demotion" else top)[name] = value
    rule = msgspec.structs.replace(alerts.demotion, **demotion) if demotion else alerts.demotion
    return msgspec.structs.replace(alerts, **top, demotion=rule)

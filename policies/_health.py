"""Health policy: probe outcomes -> healthy/unhealthy with hysteresis, probe pacing, and cooldowns.

The provider actor runs the probe loop and owns the clock; these functions only decide. A
provider turns unhealthy after ``unhealthy_after`` failed probes in a row and healthy again
after ``healthy_after`` passed probes in a row, so one lost probe does not flap the request runs'
chains. While unhealthy it is probed more often, to notice the recovery sooner; while its breaker
is open, more often still (and jittered), since a passing probe is what half-opens the breaker.

The cooldown is separate from health: a 429 says "not now" rather than "broken", so the actor
pauses admissions until an instant computed here and then carries on. A quota 429 (the account
is out of credit) says "not for a long while": it pauses the key for ``quota_s``.
"""

from __future__ import annotations

import math

import msgspec

from interlock._errors import ErrorClass

QUOTA_MAX_S = 86_400.0  # a quota cooldown is bounded by a day: a typo must not pause a provider for good


class ProbeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Probe settings; the defaults and their sources.

    - ``unhealthy_after = 3``, ``healthy_after = 2``: HAProxy's ``fall`` and ``rise`` defaults.
    - ``interval_s = 30``: a probe of an LLM provider is a real request (often billed), so it is
      spaced far wider than HAProxy's 2 s; ``unhealthy_interval_s = 5`` is the faster pace while
      down (HAProxy's ``downinter``, Envoy's ``unhealthy_interval``).
    - ``open_interval_s = 2``, ``open_jitter = 0.5``: while the breaker is open, a probe every
      1 to 3 s (2 s, plus or minus half, uniformly), so a provider that recovered is used again
      within seconds rather than after the open wait (30 s, growing to 300 s); the jitter keeps
      the probes of many processes from arriving in step ("full jitter", AWS Architecture Blog,
      *Exponential Backoff and Jitter*). Only while open, so the extra probes are few.
    - ``timeout_s = 10``: a probe that takes longer counts as failed.
    - ``model = None``: a probe is the adapter's cheap check (``GET /models`` for HTTP
      providers). Set a model id to probe with a minimal generation on it instead (one short
      user message, ``max_tokens = 1``): that sees a brownout, a provider whose model list
      answers while every generation fails, at the price of one billed token per probe.
    """

    interval_s: float = 30.0
    unhealthy_interval_s: float = 5.0
    open_interval_s: float = 2.0
    open_jitter: float = 0.5
    timeout_s: float = 10.0
    unhealthy_after: int = 3
    healthy_after: int = 2
    model: str | None = None

    def __post_init__(self) -> None:
        if not (self.interval_s > 0 and self.unhealthy_interval_s > 0 and self.open_interval_s > 0):
            raise ValueError("interval_s, unhealthy_interval_s and open_interval_s must be > 0")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if not 0 <= self.open_jitter < 1:
            raise ValueError("open_jitter must be in [0, 1)")
        if self.unhealthy_after < 1 or self.healthy_after < 1:
            raise ValueError("unhealthy_after and healthy_after must be >= 1")
        if self.model is not None and not self.model.strip():
            raise ValueError("model must name a model id (or be left out)")


class HealthState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a provider is healthy, and the current run of equal probe results.

    A fresh state is healthy: a provider is usable from the start, before its first probe.
    ``changes`` counts flips, for metrics.
    """

    healthy: bool = True
    failures_in_row: int = 0
    successes_in_row: int = 0
    changes: int = 0


def record_probe(state: HealthState, ok: bool, cfg: ProbeConfig) -> HealthState:
    """Fold one probe result in; flip only after enough equal results in a row."""
    if ok:
        successes = state.successes_in_row + 1
        flip = not state.healthy and successes >= cfg.healthy_after
        return HealthState(
            healthy=state.healthy or flip,
            successes_in_row=successes,
            changes=state.changes + flip,
        )
    failures = state.failures_in_row + 1
    flip = state.healthy and failures >= cfg.unhealthy_after
    return HealthState(
        healthy=state.healthy and not flip,
        failures_in_row=failures,
        changes=state.changes + flip,
    )


def probe_interval(state: HealthState, cfg: ProbeConfig, *, breaker_open: bool = False, draw: float = 0.5) -> float:
    """Seconds until the next probe: shorter while unhealthy, shortest while the breaker is open.

    While open the interval is ``open_interval_s`` spread by ``open_jitter``: ``draw`` is a
    uniform random number in [0, 1) from the caller (0.5 gives the interval itself).
    """
    if breaker_open:
        return cfg.open_interval_s * (1.0 + cfg.open_jitter * (2.0 * draw - 1.0))
    return cfg.interval_s if state.healthy else cfg.unhealthy_interval_s


# -- rate-limit cooldown ---------------------------------------------------------------------


class CooldownConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long a provider pauses admissions after a 429.

    - ``default_s = 1``: when the 429 carries no retry-after; about the first backoff step of
      the official OpenAI and Anthropic SDKs (0.5 s, doubling).
    - ``max_s = 60``: a longer retry-after is capped; the same SDKs only honour a retry-after of
      at most 60 s, and past that a request is better served by a fallback than a stall.
    - ``quota_s = 300``: after a quota 429 (OpenAI's ``insufficient_quota``: the account is out
      of credit or past its spending limit). Waiting a second does not help; someone has to top
      the account up, so the key rests for five minutes (its calls fail over meanwhile) and is
      tried again after that. Bounded by ``QUOTA_MAX_S`` (a day); any retry-after is ignored.
    """

    default_s: float = 1.0
    max_s: float = 60.0
    quota_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.default_s <= self.max_s:
            raise ValueError("need 0 <= default_s <= max_s")
        if not 0 < self.quota_s <= QUOTA_MAX_S:
            raise ValueError(f"quota_s must be in (0, {QUOTA_MAX_S:g}]")


def cooldown_until(
    now: float, retry_after: float | None, cfg: CooldownConfig, *, current: float | None = None
) -> float:
    """The instant until which admissions pause after a 429 at ``now``.

    ``retry_after`` is the provider's hint in seconds (None: use ``default_s``), capped at
    ``max_s``; a cooldown already running until ``current`` is never shortened.
    """
    wait = cfg.default_s if retry_after is None or math.isnan(retry_after) else retry_after
    until = now + min(max(wait, 0.0), cfg.max_s)
    return until if current is None else max(until, current)


def cooldown_after(
    kind: ErrorClass, now: float, retry_after: float | None, cfg: CooldownConfig, *, current: float
) -> float | None:
    """The instant admissions pause until after a call failed with ``kind`` at ``now``; None: no pause.

    A rate limit pauses by its retry-after (``cooldown_until``); an exhausted quota for
    ``quota_s``. A cooldown already running until ``current`` is never shortened.
    """
    if kind is ErrorClass.RATE_LIMIT:
        return cooldown_until(now, retry_after, cfg, current=current)
    if kind is ErrorClass.QUOTA:
        return max(now + cfg.quota_s, current)
    return None


def merge_cooldown(
    until: float, cause: ErrorClass | None, peer_until: float, peer_cause: ErrorClass
) -> tuple[float, ErrorClass | None]:
    """This process's cooldown after a peer's: the later instant wins, with its cause; never shortened.

    A 429 that one process of a fleet saw is the provider's (or the shared key's) answer to all
    of them, so a peer's cooldown pauses this process's admissions until the peer's instant.
    """
    if peer_until > until:
        return peer_until, peer_cause
    return until, cause


def cooling_down(until: float | None, now: float) -> bool:
    """Whether a cooldown that ends at ``until`` is still running at ``now``."""
    return until is not None and now < until

"""Circuit breaker policy, one per provider: pure transitions over a frozen state.

::

    closed ──(failure or slow-call rate >= threshold, once min_calls are in the window)──> open
    open ──(the open wait has passed; seen by admit/advance)──> half_open
    open ──(a health probe passed, unless probes were contradicted; see on_health_probe)──> half_open
    half_open ──(every permitted probe passed)──> closed
    half_open ──(any probe failed or was slow)──> open, with a longer wait (capped)

"Probe" alone means a half-open trial call (a real request); a *health* probe is the provider
actor's own check (``interlock.policies._health``), which runs often while the breaker is open.

The provider actor owns the ``BreakerState`` and the clock: it calls ``admit`` before a call,
``record`` with the call's outcome after it, ``on_health_probe`` with each health probe's
result, and keeps whatever state they return. Nothing here
reads time, sleeps or does I/O. Each admission carries the state's ``epoch`` (bumped on every
transition); an outcome that quotes an older epoch speaks about a state that is gone and is
dropped, so a slow call admitted while closed cannot pose as a half-open probe.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec.structs import replace

from interlock._errors import ErrorClass

BreakerStateName = Literal["closed", "open", "half_open"]

# Why each class counts (or not) is in the docstring of ``counts_as_failure``.
FAILURE_KINDS: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECT,
        ErrorClass.AUTH,
    }
)

_LOG_SIZE = 8  # recent transitions kept on the state; the actor diffs ``transitions`` for metrics


def counts_as_failure(kind: ErrorClass, failure_kinds: frozenset[ErrorClass] = FAILURE_KINDS) -> bool:
    """Whether an error of ``kind`` says the provider is unwell (and so feeds the breaker).

    Counted: rate_limit, overloaded, server_error, timeout, connect — the provider cannot serve
    now. Counted too: auth. Breakers are per provider and so are keys: a revoked or invalid key
    fails every call to that provider, and tripping spares each request a round trip; the
    half-open probes notice when the key works again.
    Not counted: bad_request, context_length, content_filter, content_policy — the request was
    at fault, not the provider; cancelled — we gave up (a lost hedge, a gone client); internal —
    our own bug; quota — the account is out of credit, which the provider actor's long quota
    cooldown already answers (every call is refused ``cooling_down`` meanwhile), and a breaker
    opened by it would only add half-open trials that spend nothing but requests' time. These
    results neither enter the window nor use up a half-open probe.
    """
    return kind in failure_kinds


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Breaker settings; defaults and where they come from.

    - ``failure_rate_pct = 50`` and ``slow_call_rate_pct = 100``: resilience4j's
      CircuitBreakerConfig defaults (a rate equal to the threshold trips, as there).
    - ``window_calls = 20``, ``min_calls = 10``, ``half_open_probes = 3``: resilience4j uses
      100, 100 and 10, sized for services that see thousands of calls a minute; a provider of
      LLM calls sees far fewer, each lasting seconds, so the window is scaled down to trip
      within an outage rather than after it. Probes are real (paid) calls, hence few.
    - ``window_s = None``: count-based by default, as in resilience4j (COUNT_BASED); set it to
      use a time window, or both to keep only the last ``window_calls`` within ``window_s``.
    - ``slow_call_ttft_s = 30``: time to first token above which a call is slow (resilience4j's
      60 s is for a whole call; TTFT is the first byte). ``None`` turns slow-call tripping off.
    - ``open_wait_s = 30``, ``open_wait_max_s = 300``: Envoy outlier detection's
      base_ejection_time and max_ejection_time defaults.
    - ``open_wait_multiplier = 1.5``: resilience4j's exponential-backoff default; the wait of
      the n-th trip in a row is ``open_wait_s * multiplier ** (n - 1)``, capped.
    - ``trip_memory_s = 300``: a trip within this long of the last close counts as a repeat and
      keeps growing the wait (Envoy likewise lets its ejection multiplier decay only while
      the host stays healthy); later than that, the wait starts again at ``open_wait_s``.
    - ``failure_kinds``: the error classes that count, see ``counts_as_failure``.
    """

    window_calls: int | None = 20
    window_s: float | None = None
    min_calls: int = 10
    failure_rate_pct: float = 50.0
    slow_call_ttft_s: float | None = 30.0
    slow_call_rate_pct: float = 100.0
    open_wait_s: float = 30.0
    open_wait_multiplier: float = 1.5
    open_wait_max_s: float = 300.0
    trip_memory_s: float = 300.0
    half_open_probes: int = 3
    failure_kinds: frozenset[ErrorClass] = FAILURE_KINDS

    def __post_init__(self) -> None:
        problems = [text for bad, text in self._checks() if bad]
        if problems:
            raise ValueError("; ".join(problems))  # msgspec turns this into a ValidationError with the path

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.window_calls is None and self.window_s is None, "set window_calls, window_s or both"),
            (self.window_calls is not None and self.window_calls < 1, "window_calls must be >= 1"),
            (self.window_s is not None and not self.window_s > 0, "window_s must be > 0"),
            (self.min_calls < 1, "min_calls must be >= 1"),
            (
                self.window_calls is not None and self.min_calls > self.window_calls,
                "min_calls must not exceed window_calls (the breaker could never trip)",
            ),
            (not 0 < self.failure_rate_pct <= 100, "failure_rate_pct must be in (0, 100]"),
            (not 0 < self.slow_call_rate_pct <= 100, "slow_call_rate_pct must be in (0, 100]"),
            (self.slow_call_ttft_s is not None and not self.slow_call_ttft_s > 0, "slow_call_ttft_s must be > 0"),
            (not self.open_wait_s > 0, "open_wait_s must be > 0"),
            (not self.open_wait_multiplier >= 1, "open_wait_multiplier must be >= 1"),
            (not self.open_wait_max_s >= self.open_wait_s, "open_wait_max_s must be >= open_wait_s"),
            (not self.trip_memory_s >= 0, "trip_memory_s must be >= 0"),
            (self.half_open_probes < 1, "half_open_probes must be >= 1"),
        ]


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One counted call in the closed-state window."""

    at: float
    failed: bool
    slow: bool


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an admitted call ended: ``error`` None is a success; ``epoch`` from its Admission."""

    error: ErrorClass | None = None
    ttft_s: float | None = None
    epoch: int | None = None


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """The breaker's answer to one call: allowed or not, and when to ask again.

    ``retry_in_s`` is set when open (seconds until half-open); it is None when half-open with
    every probe slot taken, since only the probes' outcomes decide what comes next.
    """

    allowed: bool
    epoch: int
    probe: bool = False
    retry_in_s: float | None = None


class Transition(msgspec.Struct, frozen=True):
    """One state change, for logs and metrics."""

    at: float
    source: BreakerStateName
    target: BreakerStateName
    reason: str


class WindowStats(msgspec.Struct, frozen=True):
    """What the closed-state window holds now."""

    calls: int
    failures: int
    slow: int

    @property
    def failure_rate_pct(self) -> float:
        """Failed share of the window in percent (0 when empty)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    """A breaker's whole state; ``BreakerState()`` is a fresh, closed breaker.

    ``trips`` counts opens in a row (kept after closing, to recognise a flapping provider);
    ``transitions`` counts every transition ever, ``recent`` keeps the last few.
    ``by_health_probe`` says the current half-open was entered early, on a passing health probe;
    ``trust_health_probes`` turns False once such a half-open failed (the health probe passes
    while real calls fail: a brownout behind a model-list probe) and True again on closing.
    """

    name: BreakerStateName = "closed"
    window: tuple[Sample, ...] = ()
    opened_at: float = 0.0
    wait_s: float = 0.0
    trips: int = 0
    closed_at: float | None = None
    probes_admitted: int = 0
    probes_passed: int = 0
    epoch: int = 0
    transitions: int = 0
    recent: tuple[Transition, ...] = ()
    by_health_probe: bool = False
    trust_health_probes: bool = True


# -- the public transitions --------------------------------------------------------------------


def advance(state: BreakerState, now: float, cfg: BreakerConfig) -> BreakerState:
    """Apply the time-driven transition: open becomes half-open once its wait has passed."""
    if state.name == "open" and now >= state.opened_at + state.wait_s:
        return _move(state, now, "half_open", "wait_elapsed", probes_admitted=0, probes_passed=0, by_health_probe=False)
    return state


def on_health_probe(state: BreakerState, ok: bool, now: float, cfg: BreakerConfig) -> BreakerState:
    """Fold one health probe's result in: a passing probe half-opens an open breaker before its wait ends.

    So a provider that recovered is tried again within a probe interval, not after the open
    wait. The half-open trials still decide: one failure reopens, with the next, longer (and
    capped) wait. If a half-open entered this way fails, the health probe has been shown not to
    speak for real calls, and until the breaker closes again only the open wait half-opens it.
    A failed probe, or one while closed or half-open, changes nothing here (health counts it).
    """
    state = advance(state, now, cfg)
    if ok and state.name == "open" and state.trust_health_probes:
        return _move(
            state, now, "half_open", "health_probe_passed", probes_admitted=0, probes_passed=0, by_health_probe=True
        )
    return state


def admit(state: BreakerState, now: float, cfg: BreakerConfig) -> tuple[BreakerState, Admission]:
    """Decide whether one call may go; in half-open, hand out at most ``half_open_probes`` slots."""
    state = advance(state, now, cfg)
    if state.name == "closed":
        return state, Admission(allowed=True, epoch=state.epoch)
    if state.name == "open":
        retry_in = min(max(0.0, state.opened_at + state.wait_s - now), state.wait_s)  # float rounding
        return state, Admission(allowed=False, epoch=state.epoch, retry_in_s=retry_in)
    if state.probes_admitted < cfg.half_open_probes:
        state = replace(state, probes_admitted=state.probes_admitted + 1)
        return state, Admission(allowed=True, epoch=state.epoch, probe=True)
    return state, Admission(allowed=False, epoch=state.epoch)


def record(state: BreakerState, outcome: CallOutcome, now: float, cfg: BreakerConfig) -> BreakerState:
    """Fold one admitted call's outcome into the state."""
    if outcome.epoch is not None and outcome.epoch != state.epoch:
        return state  # admitted under a state that has since changed: it no longer speaks for this one
    failed = outcome.error is not None and counts_as_failure(outcome.error, cfg.failure_kinds)
    ignored = outcome.error is not None and not failed
    slow = _is_slow(outcome, cfg)
    if state.name == "closed":
        return state if ignored else _record_closed(state, Sample(now, failed, slow), now, cfg)
    if state.name == "half_open":
        return _record_probe(state, ignored=ignored, failed=failed, slow=slow, now=now, cfg=cfg)
    return state  # open: nothing was admitted under this epoch


def window_stats(state: BreakerState, now: float, cfg: BreakerConfig) -> WindowStats:
    """Calls, failures and slow calls in the window as of ``now`` (empty unless closed)."""
    window = _trim(state.window, now, cfg)
    return WindowStats(len(window), sum(s.failed for s in window), sum(s.slow for s in window))


def open_wait(trips: int, cfg: BreakerConfig) -> float:
    """How long the ``trips``-th open in a row lasts: grows geometrically, capped at the max."""
    exponent = max(trips, 1) - 1
    if exponent > 64:  # far past any cap; keeps the power from overflowing
        return cfg.open_wait_max_s
    return float(min(cfg.open_wait_s * cfg.open_wait_multiplier**exponent, cfg.open_wait_max_s))


def new_transitions(old: BreakerState, new: BreakerState) -> tuple[Transition, ...]:
    """The transitions that happened between two states of one breaker, oldest first."""
    count = new.transitions - old.transitions
    if count <= 0:
        return ()
    return new.recent[-count:]


# -- helpers -------------------------------------------------------------------------------------


def _is_slow(outcome: CallOutcome, cfg: BreakerConfig) -> bool:
    threshold = cfg.slow_call_ttft_s
    return threshold is not None and outcome.ttft_s is not None and outcome.ttft_s > threshold


def _trim(window: tuple[Sample, ...], now: float, cfg: BreakerConfig) -> tuple[Sample, ...]:
    if cfg.window_s is not None:
        horizon = now - cfg.window_s
        start = 0
        while start < len(window) and window[start].at <= horizon:
            start += 1
        window = window[start:]
    if cfg.window_calls is not None and len(window) > cfg.window_calls:
        window = window[-cfg.window_calls :]
    return window


def _record_closed(state: BreakerState, sample: Sample, now: float, cfg: BreakerConfig) -> BreakerState:
    window = _trim((*state.window, sample), now, cfg)
    if not (sample.failed or sample.slow) and cfg.window_s is None and len(state.window) >= cfg.min_calls:
        # A good call added to a full-enough count window (which did not trip) cannot raise either
        # rate: the window only gains a good call and maybe drops its oldest. No need to count.
        return replace(state, window=window)
    reason = _trip_reason(window, cfg)
    if reason is None:
        return replace(state, window=window)
    return _open(state, now, cfg, reason)


def _trip_reason(window: tuple[Sample, ...], cfg: BreakerConfig) -> str | None:
    calls = len(window)
    if calls < cfg.min_calls:
        return None
    if 100 * sum(s.failed for s in window) >= cfg.failure_rate_pct * calls:
        return "failure_rate"
    if cfg.slow_call_ttft_s is not None and 100 * sum(s.slow for s in window) >= cfg.slow_call_rate_pct * calls:
        return "slow_call_rate"
    return None


def _record_probe(
    state: BreakerState, *, ignored: bool, failed: bool, slow: bool, now: float, cfg: BreakerConfig
) -> BreakerState:
    outstanding = state.probes_admitted - state.probes_passed
    if outstanding <= 0:
        return state  # no probe is out: nothing this outcome could be the answer to
    if ignored:
        return replace(state, probes_admitted=state.probes_admitted - 1)  # the slot goes back
    if failed or slow:
        return _open(state, now, cfg, "probe_failed" if failed else "probe_slow")
    passed = state.probes_passed + 1
    if passed >= cfg.half_open_probes:
        return _move(
            state, now, "closed", "probes_passed", closed_at=now, wait_s=0.0, window=(),
            by_health_probe=False, trust_health_probes=True,
        )
    return replace(state, probes_passed=passed)


def _open(state: BreakerState, now: float, cfg: BreakerConfig, reason: str) -> BreakerState:
    recent_close = state.closed_at is not None and now - state.closed_at < cfg.trip_memory_s
    repeat = state.name == "half_open" or recent_close
    trips = state.trips + 1 if repeat else 1
    contradicted = state.name == "half_open" and state.by_health_probe
    return _move(
        state,
        now,
        "open",
        reason,
        window=(),
        opened_at=now,
        wait_s=open_wait(trips, cfg),
        trips=trips,
        probes_admitted=0,
        probes_passed=0,
        by_health_probe=False,
        trust_health_probes=state.trust_health_probes and not contradicted,
    )


def _move(state: BreakerState, now: float, target: BreakerStateName, reason: str, **changes: object) -> BreakerState:
    entry = Transition(now, state.name, target, reason)
    return replace(
        state,
        name=target,
        epoch=state.epoch + 1,
        transitions=state.transitions + 1,
        recent=(*state.recent, entry)[-_LOG_SIZE:],
        **changes,
    )

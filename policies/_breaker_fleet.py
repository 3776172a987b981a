"""A fleet's breakers: what a peer process's transitions do to this one's, as pure rules over ``BreakerState``.

When processes share their state store, each tells its peers of its own breaker transitions
(``interlock.actors._shared_signals``) and folds theirs into its own breaker with these rules:
a peer's open holds here until the later of the two open-untils (``adopt_open``); a peer's close
ends only an open that came from a peer (``adopt_close``); a transition taken from a peer is
never told on (``is_own``), so signals do not echo around the fleet. Time is an argument.
"""

from __future__ import annotations

from msgspec.structs import replace

from interlock.policies._breaker import BreakerConfig, BreakerState, Transition, _move, advance

PEER_OPENED = "peer_opened"  # the reason of an open taken from a peer process
PEER_CLOSED = "peer_closed"  # the reason of a close taken from the peer that ended it
PEER_REASONS: frozenset[str] = frozenset({PEER_OPENED, PEER_CLOSED})


def is_own(change: Transition) -> bool:
    """Whether this process's own evidence made ``change`` (and so it is told to the fleet); a peer's is not re-told."""
    return change.reason not in PEER_REASONS


def adopt_open(
    state: BreakerState, *, opened_at: float, until: float, trips: int, now: float, cfg: BreakerConfig
) -> BreakerState:
    """A peer's breaker opened at ``opened_at`` and stays open until ``until`` (both on this clock).

    The later open-until wins: a closed or half-open breaker opens until ``until`` (half-open
    trials in flight then speak for a gone epoch and are dropped); an open one that would
    half-open sooner waits as long as the peer's; an open one that waits longer already is
    unchanged, as is anything when ``until`` has passed. ``trips`` carries the peer's count of
    opens in a row, so a provider that keeps failing somewhere in the fleet waits ever longer
    everywhere. This process's own half-open trials still decide when it closes.
    """
    state = advance(state, now, cfg)
    if until <= now:
        return state
    opened_at = min(opened_at, now)
    if state.name == "open":
        if state.opened_at + state.wait_s >= until:
            return state
        return replace(state, opened_at=opened_at, wait_s=until - opened_at, trips=max(state.trips, trips))
    return _move(
        state, now, "open", PEER_OPENED, window=(), opened_at=opened_at, wait_s=until - opened_at,
        trips=max(state.trips, trips), probes_admitted=0, probes_passed=0, by_health_probe=False,
    )  # fmt: skip


def adopt_close(state: BreakerState, *, closed_at: float, now: float) -> BreakerState:
    """A peer's breaker closed at ``closed_at`` (this clock): ends an open this process took from a peer.

    Only an open whose last transition was ``peer_opened``, and only when the close is later
    than that open: the peer's trials passed after the failures that opened it, so the
    provider serves again. An open of this process's own making, or a half-open, is left to
    its own trials: one peer's success does not outvote this process's failures.
    """
    if state.name != "open" or not state.recent or state.recent[-1].reason != PEER_OPENED:
        return state
    if closed_at <= state.opened_at:
        return state
    return _move(
        state, now, "closed", PEER_CLOSED, closed_at=now, wait_s=0.0, window=(),
        by_health_probe=False, trust_health_probes=True,
    )  # fmt: skip

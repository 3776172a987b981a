"""A provider actor's side of the fleet's signals: what it tells its peers, and how it folds in what they told.

The actor's clock is monotonic; a signal's instants are epoch seconds. Each crossing converts
with the two clocks read together (``now`` and ``wall``): an instant ``t`` on the monotonic
clock is ``wall - (now - t)`` on the wall clock, and back. The merge rules themselves are pure
policy (``adopt_open``, ``adopt_close`` in ``policies._breaker``; ``merge_cooldown`` in
``policies._health``): a later open-until wins, a later cooldown wins, a peer's close ends only
an open taken from a peer.
"""

from __future__ import annotations

from interlock._errors import ErrorClass
from interlock.actors._provider_state import ProviderState
from interlock.adapters.stores._signals import ProviderSignal
from interlock.policies._breaker import BreakerConfig, BreakerState, Transition
from interlock.policies._breaker_fleet import adopt_close, adopt_open
from interlock.policies._health import merge_cooldown


def breaker_signal(provider: str, breaker: BreakerState, change: Transition, now: float, wall: float) -> ProviderSignal:
    """What a peer is told of ``change``, this breaker's latest transition (``origin`` is filled in by the sender)."""
    until = wall - (now - (breaker.opened_at + breaker.wait_s)) if breaker.name == "open" else 0.0
    return ProviderSignal(
        provider=provider, kind="breaker", origin="", at=wall - (now - change.at), until=until,
        state=breaker.name, trips=breaker.trips, cause=change.reason,
    )  # fmt: skip


def cooldown_signal(provider: str, until: float, cause: ErrorClass, now: float, wall: float) -> ProviderSignal:
    """What a peer is told of a cooldown that started at ``now`` and lasts until ``until`` (monotonic)."""
    return ProviderSignal(
        provider=provider, kind="cooldown", origin="", at=wall, until=wall + (until - now), cause=cause.value
    )


def fold_peer_signals(state: ProviderState, now: float, wall: float, cfg: BreakerConfig) -> BreakerState:
    """Take every signal waiting in ``state.inbox``: cooldowns are merged in place, the breaker returned.

    The caller keeps the returned breaker as it keeps any policy's (recording its transitions).
    A signal whose instants have passed changes nothing.
    """
    breaker = state.breaker
    inbox = state.inbox
    while inbox:
        signal = inbox.popleft()
        if signal.kind == "cooldown":
            cause = signal.cooldown_cause()
            if cause is not None:
                until = now + (signal.until - wall)
                state.cooldown_until, state.cooldown_cause = merge_cooldown(
                    state.cooldown_until, state.cooldown_cause, until, cause
                )
        elif signal.state == "open":
            breaker = adopt_open(
                breaker, opened_at=now - (wall - signal.at), until=now + (signal.until - wall), trips=signal.trips,
                now=now, cfg=cfg,
            )  # fmt: skip
        elif signal.state == "closed":
            breaker = adopt_close(breaker, closed_at=now - (wall - signal.at), now=now)
    return breaker

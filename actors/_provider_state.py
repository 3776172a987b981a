"""What one provider's governance knows, kept apart from its actor, and the health probe it runs.

A provider actor crashes when its adapter has a bug, and its supervisor builds a new one. The
breaker, the probe health and the cooldown must not start afresh then: an open breaker closing
on a crash would send the next requests straight back to a failing provider, and a quota
cooldown ending would spend a call to learn again that the account is empty. So the tree makes
one ``ProviderState`` per provider, outside any actor instance, and hands the same object to
every incarnation (across a restart of the provider supervisor too: its child specs hold it).
Slots and calls in flight are not here: they end with the incarnation that held them.

When a fleet shares its state store, the state also carries the way to the peers
(``interlock.actors._shared_signals``): ``share`` tells them of this process's own breaker
transitions and cooldowns, and ``inbox`` holds what they told, until the actor folds it in at
its next admission, health snapshot or probe (a deque test per call; no store call).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import msgspec

from interlock._errors import ErrorClass, InterlockError
from interlock._records import BreakerRecord
from interlock._types import ChatRequest, Message
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.adapters.stores._signals import ProviderSignal
from interlock.policies._breaker import BreakerState
from interlock.policies._health import HealthState, ProbeConfig

RECENT_TRANSITIONS = 8  # what ``door.health()`` shows; the ledger keeps every one

# A generation probe asks for as little as a provider will bill: one short message, one token.
PROBE_REQUEST = ChatRequest(messages=(Message.text("user", "ping"),), max_tokens=1, task="probe")


class ProviderState:
    """One provider's breaker, probe health and cooldown, shared by every incarnation of its actor.

    Only the provider actor writes it (one at a time: the supervisor starts a new incarnation
    after the old one ended), always replacing a field with what a policy returned. Peers'
    signals only append to ``inbox``; ``share`` (None: nobody to tell) takes this process's own.
    """

    __slots__ = ("breaker", "cooldown_cause", "cooldown_until", "health", "inbox", "share", "transitions")

    def __init__(self, share: Callable[[ProviderSignal], None] | None = None) -> None:
        self.breaker = BreakerState()
        self.health = HealthState()
        self.cooldown_until = -math.inf
        self.cooldown_cause: ErrorClass | None = None
        self.transitions: deque[BreakerRecord] = deque(maxlen=RECENT_TRANSITIONS)
        self.share = share
        self.inbox: deque[ProviderSignal] = deque()


class ProviderHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as ``door.health()`` shows it.

    ``healthy`` is False when its health probes fail or when its breaker is open (its real calls
    failed at the trip rate: a brownout is unhealthy even while its model list answers).
    ``cooldown_cause`` is the error class that started a running cooldown (``rate_limit`` or
    ``quota``); ``recent_transitions`` are the breaker's last few, oldest first, each with its
    wall-clock time and cause; ``breaker_transitions`` counts them all.
    """

    provider: str
    breaker: Literal["closed", "open", "half_open"]
    healthy: bool
    cooling_down_s: float
    free_slots: int
    in_flight: int
    max_concurrency: int
    breaker_transitions: int
    probes_healthy: bool = True
    cooldown_cause: str | None = None
    recent_transitions: tuple[BreakerRecord, ...] = ()


async def probe_once(adapter: ProviderAdapter, cfg: ProbeConfig) -> bool:
    """Whether the provider passes one health probe within ``cfg.timeout_s``.

    Without ``cfg.model`` that is the adapter's cheap check (an HTTP provider's model list);
    with it, a minimal generation on that model, read to its end, so a provider whose model
    list answers while its generations fail (a brownout) fails the probe.
    """
    try:
        with anyio.fail_after(cfg.timeout_s):
            if cfg.model is None:
                await adapter.probe()
            else:
                events = adapter.stream(PROBE_REQUEST, cfg.model)
                try:
                    async for _ in events:
                        pass
                finally:
                    await events.aclose()  # releases the connection at once
    except (InterlockError, TimeoutError):
        return False
    return True

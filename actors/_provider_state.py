"""What one provider's governance knows, kept apart from its actor, and the health probe it runs.

A provider actor crashes when its adapter has a bug, and its supervisor builds a new one. The
breaker, the probe health and the cooldown must not start afresh then: an open breaker closing
on a crash would send the next requests straight back to a failing provider, and a quota
cooldown ending would spend a call to learn again that the account is empty. So the tree makes
one ``ProviderState`` per provider, outside any actor instance, and hands the same object to
every incarnation (across a restart of the provider supervisor too: its child specs hold it).
Slots and calls in flight are not here: they end with the incarnation that held them.
"""

from __future__ import annotations

import math
from collections import deque

import anyio

from interlock._errors import ErrorClass, InterlockError
from interlock._records import BreakerRecord
from interlock._types import ChatRequest, Message
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.policies._breaker import BreakerState
from interlock.policies._health import HealthState, ProbeConfig

RECENT_TRANSITIONS = 8  # what ``door.health()`` shows; the ledger keeps every one

# A generation probe asks for as little as a provider will bill: one short message, one token.
PROBE_REQUEST = ChatRequest(messages=(Message.text("user", "ping"),), max_tokens=1, task="probe")


class ProviderState:
    """One provider's breaker, probe health and cooldown, shared by every incarnation of its actor.

    Only the provider actor writes it (one at a time: the supervisor starts a new incarnation
    after the old one ended), always replacing a field with what a policy returned.
    """

    __slots__ = ("breaker", "cooldown_cause", "cooldown_until", "health", "transitions")

    def __init__(self) -> None:
        self.breaker = BreakerState()
        self.health = HealthState()
        self.cooldown_until = -math.inf
        self.cooldown_cause: ErrorClass | None = None
        self.transitions: deque[BreakerRecord] = deque(maxlen=RECENT_TRANSITIONS)


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

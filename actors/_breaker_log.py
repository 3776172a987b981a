"""Where the providers' breaker transitions go: the ledger's breaker table, and the OpenTelemetry counter.

A provider actor calls a ``BreakerLog`` with each transition as the ``BreakerRecord`` the
ledger keeps (time, provider, from, to, cause). The call is synchronous, as the breaker's
bookkeeping is, so the record goes into the ledger's mailbox with ``tell_nowait``. Transitions
are few (a handful per outage) and nearly always find room; one that finds the mailbox full is
kept and sent with the next transition, or, at the latest, by ``flush`` as the door closes.
"""

from __future__ import annotations

import contextlib

from interlock._actor import ActorRef
from interlock._errors import ActorStopped, MailboxFull
from interlock._records import BreakerRecord
from interlock.actors._ledger_actor import LedgerMsg, Records
from interlock.adapters.telemetry._otel import OtelMirror


class BreakerLog:
    """Records every breaker transition in the ledger and, when exporting, counts it in OpenTelemetry."""

    def __init__(self, ledger: ActorRef[LedgerMsg], mirror: OtelMirror | None) -> None:
        self._ledger = ledger
        self._mirror = mirror
        self._pending: list[BreakerRecord] = []  # oldest first; non-empty only while the mailbox is full

    def __call__(self, record: BreakerRecord) -> None:
        """Take one transition: counted at once, recorded in the ledger's next batch."""
        if self._mirror is not None:
            self._mirror.breaker_transition(record.provider, record.from_state, record.to_state)
        self._pending.append(record)
        try:
            self._ledger.tell_nowait(Records(tuple(self._pending)))
        except MailboxFull:
            return  # kept for the next transition or the flush at close
        except ActorStopped:
            pass  # the ledger stopped for good: the door is closing and has nowhere to write them
        self._pending.clear()

    async def flush(self) -> None:
        """Send what found the mailbox full, waiting for room; called as the door closes, before the ledger stops."""
        if self._pending:
            pending, self._pending = tuple(self._pending), []
            with contextlib.suppress(ActorStopped):
                await self._ledger.tell(Records(pending))

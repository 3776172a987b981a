"""Provider signals: what the processes of a fleet tell each other about a provider's breaker and cooldown.

A process whose breaker for a provider changes state, or which starts a cooldown after a 429,
publishes a ``ProviderSignal``; every process reads its peers' signals in the background and
folds them into its own breaker and cooldown (``interlock.actors._shared_signals``). The store
keeps the latest signal per provider, kind and origin (a process), and hands each reader the
ones written since its ``cursor``: the first read (cursor ``""``) is the whole snapshot, so a
process that starts during an outage learns of it at once.

Two implementations: ``SqliteProviderSignals`` (the processes of one host, sharing the state
file) and ``RedisProviderSignals`` (across hosts). Both translate their client's errors into
``SignalsStoreError`` at their one seam; the reader treats any of them as "the store is down"
and carries on with local breakers. Times in a signal are epoch seconds (``Clock.wall()``), as a
monotonic clock means nothing to another process; across hosts they assume synchronized clocks
(NTP), and a skew of a second shifts a peer's instants by that second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from interlock._errors import ErrorClass, InterlockError
from interlock.policies._breaker import BreakerStateName

SignalKind = Literal["breaker", "cooldown"]


class ProviderSignal(msgspec.Struct, frozen=True, kw_only=True):
    """One process's latest word on one provider's breaker or cooldown.

    - ``kind = "breaker"``: ``state`` is the breaker's new state; when ``open``, ``until`` is
      the instant it half-opens and ``trips`` its count of opens in a row; ``cause`` is the
      transition's reason (``failure_rate``, ``probe_failed``, ``probes_passed``, ...).
    - ``kind = "cooldown"``: admissions pause until ``until``; ``cause`` is the error class that
      started it (``rate_limit`` or ``quota``).

    ``origin`` names the publishing process (host, pid and a random part); ``at`` is when the
    change happened there. Times are epoch seconds.
    """

    provider: str
    kind: SignalKind
    origin: str
    at: float
    until: float = 0.0
    state: BreakerStateName | None = None
    trips: int = 0
    cause: str = ""

    def cooldown_cause(self) -> ErrorClass | None:
        """The error class of a cooldown signal; None when ``cause`` names none (a foreign or newer writer)."""
        try:
            return ErrorClass(self.cause)
        except ValueError:
            return None


class SignalsStoreError(InterlockError):
    """The provider-signals store could not be reached, read or written; ``where`` and ``problem`` say why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"provider signals store {where}: {problem}", kind=ErrorClass.INTERNAL)
        self.where = where
        self.problem = problem


class ProviderSignals(Protocol):
    """Where a fleet's provider signals meet: publish one, read what peers published since a cursor."""

    @property
    def pushes(self) -> bool:
        """Whether ``changes`` waits for a new signal (then the reader need not sleep between reads)."""
        ...

    @property
    def shown(self) -> str:
        """The store's address as it may be shown (no password)."""
        ...

    async def publish(self, signal: ProviderSignal) -> None:
        """Keep ``signal`` as its origin's latest for its provider and kind, and hand it to every reader."""
        ...

    async def purge(self, before: float) -> int:
        """Forget the signals whose instants (``at`` and ``until``) are all before ``before``; return how many."""
        ...

    async def changes(self, cursor: str, wait_s: float) -> tuple[Sequence[ProviderSignal], str]:
        """The signals written since ``cursor`` (all of them for ``""``), oldest first, and the next cursor.

        A store that ``pushes`` waits up to ``wait_s`` for the first new one; another answers at once.
        """
        ...


def decode_signal(raw: bytes | str) -> ProviderSignal | None:
    """A stored signal, or None when the bytes are not one (written by a newer or foreign writer)."""
    try:
        return msgspec.json.decode(raw, type=ProviderSignal)
    except msgspec.DecodeError:
        return None


def encode_signal(signal: ProviderSignal) -> bytes:
    """A signal as it is stored."""
    return msgspec.json.encode(signal)

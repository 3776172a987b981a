"""The provider adapter protocol: the one surface a provider actor drives.

HTTP providers implement it with a codec over httpx2 (``_http``); command-line models with a
subprocess (``_command``). Nothing provider-specific leaks above this protocol.

``batches`` is the one optional capability, and it is typed rather than probed for: every
adapter has the attribute, either ``None`` or a ``Batches`` callable (``HttpAdapter.batches``,
a bound method). The provider actor relays a batch to its caller with one wake-up instead of
one per event; an adapter whose ``batches`` is ``None`` (``CommandAdapter``) is read through
``stream``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from interlock._types import ChatRequest, StreamEvent


class Batches(Protocol):
    """Runs one call like ``ProviderAdapter.stream``, yielding its events in lists (HTTP: one per network chunk)."""

    def __call__(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The events ``stream`` would yield, in order, as lists that are never empty."""
        ...


class ProviderAdapter(Protocol):
    """Runs calls against one provider; call failures are ``ProviderError`` (``RequestError`` for bad input)."""

    @property
    def name(self) -> str:
        """The provider's configured name (e.g. ``openai``)."""
        ...

    @property
    def batches(self) -> Batches | None:
        """The batched form of ``stream``, or ``None`` when the adapter has none (see the module docstring)."""
        ...

    def stream(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run one call, yielding canonical events; the caller iterates it in one task.

        With ``stream=False`` the provider is asked for a whole response, and its events are
        yielded at once. Ends with one ``Finish``, after one ``UsageEvent`` when the provider
        reported usage (none when it did not). Closing the iterator
        early (or cancelling the task) releases the connection or process at once.
        """
        ...

    async def probe(self) -> None:
        """A cheap health check; raises ``ProviderError`` when the provider is not usable."""
        ...

    async def aclose(self) -> None:
        """Release every connection, process and file the adapter holds."""
        ...

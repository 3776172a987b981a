"""The provider adapter protocol: the one surface a provider actor drives.

HTTP providers implement it with a codec over httpx2 (``_http``); command-line models with a
subprocess (``_command``). Nothing provider-specific leaks above this protocol.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from interlock._types import ChatRequest, StreamEvent


class ProviderAdapter(Protocol):
    """Runs calls against one provider; call failures are ``ProviderError`` (``RequestError`` for bad input)."""

    @property
    def name(self) -> str:
        """The provider's configured name (e.g. ``openai``)."""
        ...

    def stream(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run one call, yielding canonical events; the caller iterates it in one task.

        With ``stream=False`` the provider is asked for a whole response, and its events are
        yielded at once. Ends with one ``UsageEvent`` and one ``Finish``. Closing the iterator
        early (or cancelling the task) releases the connection or process at once.
        """
        ...

    async def probe(self) -> None:
        """A cheap health check; raises ``ProviderError`` when the provider is not usable."""
        ...

    async def aclose(self) -> None:
        """Release every connection, process and file the adapter holds."""
        ...

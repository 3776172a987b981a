"""The provider codec protocol: what every HTTP provider adapter implements, and nothing more.

A codec is pure: it turns a canonical request into a wire request, wire bytes into canonical
stream events, and an HTTP failure into a typed ``ProviderError``. It does no I/O, so it is
tested on recorded byte streams; the transport in ``_http`` runs any codec over httpx2.

Every decoder emits, at the end of a successful answer, exactly one ``UsageEvent`` followed by
one ``Finish``, whatever order the provider sends them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from interlock._errors import MidStreamError, ProviderError
from interlock._types import ChatRequest, StreamEvent


class WireRequest(msgspec.Struct, frozen=True):
    """An HTTP request ready to send; ``path`` is relative to the provider's base URL."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def __repr__(self) -> str:
        # Headers carry API keys: a repr shows their names only.
        return f"WireRequest({self.method} {self.path}, headers={sorted(self.headers)})"


class StreamDecoder(Protocol):
    """Incremental decoder of one streamed response."""

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far; attached to a mid-stream error."""
        ...

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; raises ``MidStreamError`` on an in-band error or bad JSON."""
        ...

    def close(self) -> list[StreamEvent]:
        """The body ended; raises ``MidStreamError`` if the stream had not finished."""
        ...


class Codec(Protocol):
    """Pure mapping between canonical types and one provider's wire format."""

    provider: str

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        """Build the wire request; raises ``RequestError`` for what the provider cannot take."""
        ...

    def stream_decoder(self, model_id: str) -> StreamDecoder:
        """A fresh decoder for one streamed response."""
        ...

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        """Decode a non-streamed response body into the same events a stream would give."""
        ...

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        """Map an HTTP failure (status, headers, body) to a typed error with retry hint."""
        ...

    def probe_request(self) -> WireRequest:
        """A cheap request whose 2xx answer shows the provider is up (e.g. list models)."""
        ...


class HeldFailure:
    """A decoder's failure held back until the events it decoded before the failure are returned.

    A network chunk may carry good events and then a broken one; the caller must get the good
    ones (they may already be text the user sees) before the error ends the stream.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: MidStreamError | None = None

    def raise_pending(self) -> None:
        """Raise the held failure, if any (at the start of the next ``feed`` or ``close``)."""
        if self.pending is not None:
            raise self.pending

    def hold(self, out: list[StreamEvent], error: MidStreamError) -> list[StreamEvent]:
        """Return ``out`` and hold ``error`` for the next call; with nothing to return, raise it now."""
        if not out:
            raise error
        self.pending = error
        return out

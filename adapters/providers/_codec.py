"""The provider codec protocol: what every HTTP provider adapter implements, and nothing more.

A codec is pure: it turns a canonical request into a wire request, wire bytes into canonical
stream events, and an HTTP failure into a typed ``ProviderError``. It does no I/O, so it is
tested on recorded byte streams; the transport in ``_http`` runs any codec over httpx2.

Every decoder emits, at the end of a successful answer, one ``UsageEvent`` if the provider
reported usage (none when it did not: unknown is not zero) followed by one ``Finish``, whatever
order the provider sends them in. The ``Finish`` carries how many malformed events the stream
skipped (``MalformedEvents``), the provider's own finish reason and the model id the response
says answered. A refusal is ``RefusalDelta``, never text. An error raised after the provider
reported usage carries that usage (``ProviderError.usage``): it was billed all the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

import msgspec

from interlock._errors import MidStreamError, ProviderError
from interlock._secret import Secret
from interlock._types import ChatRequest, StreamEvent, Usage


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

    @property
    def usage_so_far(self) -> Usage | None:
        """The usage the provider reported so far (None if none); rides on a broken connection's error."""
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


def scrub_key(text: str, key: Secret | None) -> str:
    """``text`` with the API key replaced: an in-band error message may echo what was sent."""
    secret = key.reveal() if key is not None else ""
    return text.replace(secret, "****") if secret else text


MALFORMED_LIMIT = 3
"""Malformed events one stream may skip; the next one fails it.

One glitch (a proxy's stray line, one corrupted frame) is the case worth surviving, and a stray
blank line inside one event turns it into two bad ones; three leaves room for that and one more.
A stream past that is not an otherwise healthy stream, and what else it says cannot be trusted.
A bound on the total rather than on a run of consecutive bad events: a run needs bookkeeping on
every good event, and a stream of garbage passes the total within its first four events anyway.
"""

# An error object, or an Anthropic error event, seen in data that does not decode.
_ERROR_MARK = re.compile(rb'"error"\s*:|"type"\s*:\s*"error"')


class MalformedEvents:
    """The malformed events one stream skipped, and whether the next one may be skipped too.

    A decoder asks ``refusal`` only on the path where an event's data did not decode (or had the
    wrong shape); a healthy stream never reaches it, so skipping costs it nothing. The event is
    skipped and counted unless it must fail the stream: it names an error (an in-band error we
    cannot read is not a hiccup to pass over), the decoder says losing it would corrupt what it
    is assembling (``structural``: a tool call's arguments, a block's identity, the usage), or
    the stream already skipped ``MALFORMED_LIMIT`` events.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def refusal(self, data: bytes | str, where: str, *, structural: bool) -> str | None:
        """None to skip ``data`` (now counted); else why the stream fails, as a detail naming ``where``.

        ``where`` says which event, and where in the stream (e.g. ``near byte 812``); the detail
        never quotes the data, which may echo what the request sent.
        """
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        if _ERROR_MARK.search(raw) is not None:
            return f"malformed error event {where}"
        if structural:
            return f"malformed event {where}: what it carried cannot be recovered"
        if self.count >= MALFORMED_LIMIT:
            return f"more than {MALFORMED_LIMIT} malformed events (the last {where})"
        self.count += 1
        return None

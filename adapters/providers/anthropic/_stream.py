"""The response side of the Anthropic Messages codec: the stream decoder and what it shares.

Holds the incremental Messages-stream decoder and what it shares with the non-streamed path of
``_codec``: the error table lookup (``error_kind``), usage normalization (``to_usage``) and the
closing events (``final_events``). The usage rules are documented in ``_codec``.

Stream rules: text, thinking, signature and tool-argument deltas map one to one; a ``tool_use``
block's close yields ``ToolCallDone`` (``{}`` when the tool takes no arguments); ``message_stop``
yields one ``UsageEvent`` (only if ``message_start`` or ``message_delta`` carried usage: none
is unknown, not zero) and the one ``Finish``, with the raw ``stop_reason`` and the
``message_start`` message's ``model``. ``stop_reason: "refusal"`` is ``content_filter``; the text
streamed before it stays text (Anthropic sends no refusal text). An in-band ``error`` event or a
body that ends before ``message_stop`` raises ``MidStreamError`` with the text decoded so far and
the usage reported before it.

Malformed events (data that does not decode as an event) are judged by their SSE event name,
which survives a broken payload. anthropic-sdk-python's ``Stream.__stream__`` parses only the
event names it knows: it skips ``ping`` and every unknown name without reading their data, turns an
``error`` event whose data is not JSON into an error carrying the raw text, and lets a malformed
known event (``message_start``, ``content_block_delta``...) end the stream with ``json.loads``'s
``JSONDecodeError``. We go one step further and skip, counting it on the ``Finish``
(``MalformedEvents`` in ``_codec``), a malformed event that loses nothing we assemble: ``ping``, an
unknown or unnamed event, and a ``content_block_delta`` while only text blocks are open (it loses
its own text, which the count makes visible). We fail on the rest, as the SDK does: a malformed
``error`` event (an error, whatever it said; we do not quote it), a ``content_block_delta`` while a
tool_use or thinking block is open (arguments or a signed thinking text would be corrupted), and
the events that carry structure: ``message_start`` (input usage), ``content_block_start`` (the
block's kind and identity), ``content_block_stop`` (a tool call's end), ``message_delta`` (stop
reason, output usage), ``message_stop``; and an event cut by the body's end, or past the bound.
"""

from __future__ import annotations

from typing import final

import msgspec

from interlock._errors import ErrorClass, MidStreamError
from interlock._secret import Secret
from interlock._types import (
    Finish,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import HeldFailure, MalformedEvents, scrub_key
from interlock.adapters.providers._sse import SSEEvent, SSEParser
from interlock.adapters.providers.anthropic import _wire as w

__all__ = ["AnthropicStreamDecoder", "error_kind", "final_events", "merged", "to_usage"]

# invalid_request_error messages that mean the prompt does not fit the model's window.
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")
# invalid_request_error messages that mean the account has no credit or hit a spend limit: the
# documented 400 of a spend limit you set ("You have reached your specified [workspace] API usage
# limits") and the 400 of an empty credit balance ("Your credit balance is too low ...").
_QUOTA_MARKERS = ("api usage limits", "credit balance is too low")
# details.error_code of the 429 sent while the usage tier's monthly spend cap pauses the account.
_QUOTA_CODES = frozenset({"enforced_spend_limit_reached"})
# Events whose loss cannot be recovered: each carries usage, a block's identity or the answer's end.
_STRUCTURAL_EVENTS = frozenset(
    {"message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"}
)


def error_kind(error_type: str, message: str, status: int | None, error_code: str = "") -> ErrorClass:
    """The error class of an Anthropic error type (or, failing that, an HTTP status).

    Quota (the account cannot pay, or a spend limit paused it) is told apart from a rate limit
    and a bad request by what the error docs give: ``billing_error`` (402), a 429 whose
    ``details.error_code`` is ``enforced_spend_limit_reached``, and the messages of a 400 spend
    limit or empty credit balance.
    """
    if error_code in _QUOTA_CODES:
        return ErrorClass.QUOTA
    kind = w.ERROR_TYPES.get(error_type)
    if kind is None and status is not None:
        kind = w.STATUS_KINDS.get(status, ErrorClass.BAD_REQUEST if 400 <= status < 500 else None)
    kind = kind or ErrorClass.SERVER_ERROR
    if kind is ErrorClass.BAD_REQUEST:
        lowered = message.lower()
        if any(m in lowered for m in _QUOTA_MARKERS):
            return ErrorClass.QUOTA
        if any(m in lowered for m in _CONTEXT_MARKERS):
            return ErrorClass.CONTEXT_LENGTH
    return kind


def to_usage(usage: w.WireUsage) -> Usage:
    """Canonical usage: Anthropic's input count already leaves out cache reads and writes."""
    return Usage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
    )


def final_events(
    usage: w.WireUsage | None, stop_reason: str | None, skipped: int = 0, served_model: str = ""
) -> list[StreamEvent]:
    """The events that end every answer: a ``UsageEvent`` if usage was reported, then the one ``Finish``.

    The ``Finish`` holds the ``skipped`` malformed events, the raw stop reason and ``served_model``.
    """
    raw = stop_reason or ""
    finish = Finish(w.STOP_REASONS.get(raw, "stop"), skipped, raw, served_model)
    return [finish] if usage is None else [UsageEvent(to_usage(usage)), finish]


def merged(old: w.WireUsage | None, new: w.WireUsage | None) -> w.WireUsage | None:
    """``old`` overridden by every count ``new`` carries; None while neither reported any."""
    if new is None or old is None:
        return old or new
    return old.updated(new)


class _ToolBlock(msgspec.Struct):
    """A tool_use block being streamed: its identity and argument fragments so far."""

    id: str
    name: str
    start_input: str
    fragments: list[str] = msgspec.field(default_factory=list)


@final
class AnthropicStreamDecoder:
    """Incremental decoder of one Messages stream; chunk boundaries never change the events."""

    def __init__(self, provider: str, model_id: str, key: Secret | None = None) -> None:
        self._provider = provider
        self._model_id = model_id
        self._key = key  # only to scrub it from error details
        self._parser = SSEParser()
        self._held = HeldFailure()
        self._text: list[str] = []
        self._tools: dict[int, _ToolBlock] = {}
        self._fragile: set[int] = set()  # open blocks other than text: their deltas cannot be lost
        self._malformed = MalformedEvents()
        self._usage: w.WireUsage | None = None  # None until an event reports usage: unknown, not zero
        self._served = ""  # message_start's ``message.model``
        self._stop_reason: str | None = None
        self._done = False

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far."""
        return "".join(self._text)

    @property
    def usage_so_far(self) -> Usage | None:
        """The usage the provider reported so far (None if none): it rides on a broken connection's error."""
        return to_usage(self._usage) if self._usage is not None else None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; raises ``MidStreamError`` on an in-band error or an unskippable bad event.

        Events decoded before a failure in the same chunk are returned first; the failure is
        raised by the next ``feed`` or ``close``.
        """
        self._held.raise_pending()
        out: list[StreamEvent] = []
        try:
            self._handle_into(self._parser.feed(chunk), out, cut=False)
        except MidStreamError as exc:
            return self._held.hold(out, exc)
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended; raises ``MidStreamError`` unless ``message_stop`` was seen."""
        self._held.raise_pending()
        out: list[StreamEvent] = []
        # Only an event without its blank line is left: if it does not decode, the body was cut in it.
        self._handle_into(self._parser.close(), out, cut=True)
        if not self._done:
            raise self._broken(f"stream ended before message_stop at byte {self._parser.offset}")
        return out

    def _broken(self, why: str, kind: ErrorClass = ErrorClass.SERVER_ERROR) -> MidStreamError:
        detail = scrub_key(f"{self._provider}: {why}", self._key)
        # Usage reported before the failure was billed by the provider: it travels on the error.
        usage = to_usage(self._usage) if self._usage is not None else None
        return MidStreamError(
            kind, self._provider, partial=self.partial_text, model=self._model_id, detail=detail, usage=usage
        )

    def _handle_into(self, sse_events: list[SSEEvent], out: list[StreamEvent], *, cut: bool) -> None:
        for sse in sse_events:
            if self._done:
                break  # nothing after message_stop belongs to this answer
            try:
                event = w.EVENT_DECODER.decode(sse.data)
            except msgspec.DecodeError:
                self._malformed_event(sse.event, sse.data, cut=cut)
                continue
            self._event(event, out)

    def _malformed_event(self, name: str, data: str, *, cut: bool) -> None:
        """Skip (and count) a malformed event, or raise why it fails the stream (see the module doc)."""
        where = f"{name} near byte {self._parser.offset}"
        if cut:
            raise self._broken(f"cut mid-event ({where})")
        if name == "error":
            raise self._broken(f"malformed error event near byte {self._parser.offset}")
        structural = name in _STRUCTURAL_EVENTS or (name == "content_block_delta" and bool(self._fragile))
        problem = self._malformed.refusal(data, where, structural=structural)
        if problem is not None:
            raise self._broken(problem)

    def _event(self, event: w.WireEvent, out: list[StreamEvent]) -> None:
        match event.type:
            case "message_start" if event.message is not None:
                self._usage = merged(self._usage, event.message.usage)
                self._served = event.message.model
            case "content_block_start" if event.content_block is not None:
                self._block_start(event.index, event.content_block, out)
            case "content_block_delta" if event.delta is not None:
                self._block_delta(event.index, event.delta, out)
            case "content_block_stop":
                self._fragile.discard(event.index)
                tool = self._tools.pop(event.index, None)
                if tool is not None:
                    args = "".join(tool.fragments) or tool.start_input or "{}"
                    out.append(ToolCallDone(event.index, tool.id, tool.name, args))
            case "message_delta":
                if event.delta is not None and event.delta.stop_reason:
                    self._stop_reason = event.delta.stop_reason
                self._usage = merged(self._usage, event.usage)
            case "message_stop":
                out += final_events(self._usage, self._stop_reason, self._malformed.count, self._served)
                self._done = True
            case "error":
                err = event.error or w.WireErrorBody()
                kind = error_kind(err.type, err.message, None, err.error_code)
                raise self._broken(f"{err.type or 'error'}: {err.message}", kind)
            # ping, and event types Anthropic may add later, carry nothing for us

    def _block_start(self, index: int, block: w.WireBlock, out: list[StreamEvent]) -> None:
        if block.type != "text":
            self._fragile.add(index)
        if block.type == "tool_use":
            self._tools[index] = _ToolBlock(block.id, block.name, bytes(block.input).decode())
            out.append(ToolCallDelta(index, block.id, block.name))
        elif block.type == "text" and block.text:
            self._text.append(block.text)
            out.append(TextDelta(block.text))
        elif block.type == "thinking" and block.thinking:
            out.append(ThinkingDelta(text=block.thinking))

    def _block_delta(self, index: int, delta: w.WireDelta, out: list[StreamEvent]) -> None:
        match delta.type:
            case "text_delta" if delta.text:
                self._text.append(delta.text)
                out.append(TextDelta(delta.text))
            case "input_json_delta" if delta.partial_json and index in self._tools:
                self._tools[index].fragments.append(delta.partial_json)
                out.append(ToolCallDelta(index, arguments=delta.partial_json))
            case "thinking_delta" if delta.thinking:
                out.append(ThinkingDelta(text=delta.thinking))
            case "signature_delta" if delta.signature:
                out.append(ThinkingDelta(signature=delta.signature))

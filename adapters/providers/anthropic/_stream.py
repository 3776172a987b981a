"""The response side of the Anthropic Messages codec: the stream decoder and what it shares.

Holds the incremental Messages-stream decoder and what it shares with the non-streamed path of
``_codec``: the error table lookup (``error_kind``), usage normalization (``to_usage``) and the
closing events (``final_events``). The usage rules are documented in ``_codec``.

Stream rules: text, thinking, signature and tool-argument deltas map one to one; a ``tool_use``
block's close yields ``ToolCallDone`` (``{}`` when the tool takes no arguments); ``message_stop``
yields the one ``UsageEvent`` and the one ``Finish``. An in-band ``error`` event, bad JSON, or a
body that ends before ``message_stop`` raises ``MidStreamError`` with the text decoded so far.
"""

from __future__ import annotations

from typing import final

import msgspec

from interlock._errors import ErrorClass, MidStreamError
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
from interlock.adapters.providers._codec import HeldFailure
from interlock.adapters.providers._sse import SSEEvent, SSEParser
from interlock.adapters.providers.anthropic import _wire as w

__all__ = ["AnthropicStreamDecoder", "error_kind", "final_events", "to_usage"]

# invalid_request_error messages that mean the prompt does not fit the model's window.
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")


def error_kind(error_type: str, message: str, status: int | None) -> ErrorClass:
    """The error class of an Anthropic error type (or, failing that, an HTTP status)."""
    kind = w.ERROR_TYPES.get(error_type)
    if kind is None and status is not None:
        kind = w.STATUS_KINDS.get(status, ErrorClass.BAD_REQUEST if 400 <= status < 500 else None)
    kind = kind or ErrorClass.SERVER_ERROR
    if kind is ErrorClass.BAD_REQUEST and any(m in message.lower() for m in _CONTEXT_MARKERS):
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


def final_events(usage: w.WireUsage, stop_reason: str | None) -> list[StreamEvent]:
    """The one ``UsageEvent`` and the one ``Finish`` that end every answer."""
    return [UsageEvent(to_usage(usage)), Finish(w.STOP_REASONS.get(stop_reason or "", "stop"))]


class _ToolBlock(msgspec.Struct):
    """A tool_use block being streamed: its identity and argument fragments so far."""

    id: str
    name: str
    start_input: str
    fragments: list[str] = msgspec.field(default_factory=list)


@final
class AnthropicStreamDecoder:
    """Incremental decoder of one Messages stream; chunk boundaries never change the events."""

    def __init__(self, provider: str, model_id: str) -> None:
        self._provider = provider
        self._model_id = model_id
        self._parser = SSEParser()
        self._held = HeldFailure()
        self._text: list[str] = []
        self._tools: dict[int, _ToolBlock] = {}
        self._usage = w.WireUsage()
        self._stop_reason: str | None = None
        self._done = False

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far."""
        return "".join(self._text)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; raises ``MidStreamError`` on an in-band error or bad JSON.

        Events decoded before a failure in the same chunk are returned first; the failure is
        raised by the next ``feed`` or ``close``.
        """
        self._held.raise_pending()
        out: list[StreamEvent] = []
        try:
            self._handle_into(self._parser.feed(chunk), out)
        except msgspec.DecodeError:
            where = f"malformed JSON in a stream event near byte {self._parser.offset}"
            return self._held.hold(out, self._broken(where))
        except MidStreamError as exc:
            return self._held.hold(out, exc)
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended; raises ``MidStreamError`` unless ``message_stop`` was seen."""
        self._held.raise_pending()
        pending = self._parser.has_pending
        try:
            out = self._handle(self._parser.close())
        except msgspec.DecodeError:
            what = "cut mid-event" if pending else "malformed JSON in a stream event"
            raise self._broken(f"{what} near byte {self._parser.offset}") from None
        if not self._done:
            raise self._broken(f"stream ended before message_stop at byte {self._parser.offset}")
        return out

    def _broken(self, why: str, kind: ErrorClass = ErrorClass.SERVER_ERROR) -> MidStreamError:
        return MidStreamError(
            kind, self._provider, partial=self.partial_text, model=self._model_id, detail=f"{self._provider}: {why}"
        )

    def _handle(self, sse_events: list[SSEEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        self._handle_into(sse_events, out)
        return out

    def _handle_into(self, sse_events: list[SSEEvent], out: list[StreamEvent]) -> None:
        for sse in sse_events:
            if self._done:
                break  # nothing after message_stop belongs to this answer
            self._event(w.EVENT_DECODER.decode(sse.data), out)  # DecodeError: feed/close report it

    def _event(self, event: w.WireEvent, out: list[StreamEvent]) -> None:
        match event.type:
            case "message_start" if event.message is not None:
                self._usage = self._usage.updated(event.message.usage)
            case "content_block_start" if event.content_block is not None:
                self._block_start(event.index, event.content_block, out)
            case "content_block_delta" if event.delta is not None:
                self._block_delta(event.index, event.delta, out)
            case "content_block_stop" if event.index in self._tools:
                tool = self._tools.pop(event.index)
                args = "".join(tool.fragments) or tool.start_input or "{}"
                out.append(ToolCallDone(event.index, tool.id, tool.name, args))
            case "message_delta":
                if event.delta is not None and event.delta.stop_reason:
                    self._stop_reason = event.delta.stop_reason
                if event.usage is not None:
                    self._usage = self._usage.updated(event.usage)
            case "message_stop":
                out += final_events(self._usage, self._stop_reason)
                self._done = True
            case "error":
                err = event.error or w.WireErrorBody()
                kind = error_kind(err.type, err.message, None)
                raise self._broken(f"{err.type or 'error'}: {err.message}", kind)
            # ping, and event types Anthropic may add later, carry nothing for us

    def _block_start(self, index: int, block: w.WireBlock, out: list[StreamEvent]) -> None:
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

"""The response side of the Google Gemini codec: the stream decoder and what it shares.

Holds the incremental decoder of a ``streamGenerateContent?alt=sse`` body (also used, one
response object at a time, for a whole ``generateContent`` answer) and what ``_codec`` shares
with it: the error table lookup (``error_kind``) and usage normalization (``usage_of``).
Decisions, each pinned by tests/test_codec_gemini.py:

- Function calls arrive whole: a ``ToolCallDelta`` and a ``ToolCallDone`` each, with Gemini's
  ``id`` or ``call_<n>`` (n-th call of the answer). A call's ``thoughtSignature`` rides on its
  ``ToolCallDone.signature``, not on a thinking event; ``_codec`` sends it back on later turns.
- Usage: ``promptTokenCount`` includes ``cachedContentTokenCount``: input = prompt - cached
  (+ ``toolUsePromptTokenCount``), cache_read = cached, output = candidates + thoughts
  (thinking is billed as output). Chunks repeat usage: the last report wins.
- Finish: STOP -> stop (tool_calls if functions were called), MAX_TOKENS -> length, the
  safety / recitation / blocklist family -> content_filter, any other reason -> error.
- Only candidate 0 is read (one is ever asked for). Gemini sends no ``[DONE]``: the body's end
  gives the one ``UsageEvent`` and the one ``Finish``. An in-band error, bad JSON, or a body
  that ends before a finish reason raises ``MidStreamError`` with the text decoded so far; a
  blocked prompt is a ``ProviderError`` of kind ``content_policy``.
"""

from __future__ import annotations

import re

import msgspec

from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._types import (
    Finish,
    FinishReason,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import HeldFailure
from interlock.adapters.providers._sse import SSEParser
from interlock.adapters.providers.gemini import _wire as w

__all__ = ["GeminiStreamDecoder", "error_kind", "usage_of"]

E = ErrorClass
# (google.rpc status, HTTP code, kind); codes not listed: 5xx -> server_error, else bad_request.
_ERROR_TABLE: tuple[tuple[str, int, ErrorClass], ...] = (
    ("INVALID_ARGUMENT", 400, E.BAD_REQUEST),  # token-limit messages -> context_length, below
    ("FAILED_PRECONDITION", 400, E.BAD_REQUEST),  # e.g. region not supported, billing off
    ("UNAUTHENTICATED", 401, E.AUTH),
    ("PERMISSION_DENIED", 403, E.AUTH),
    ("NOT_FOUND", 404, E.BAD_REQUEST),
    ("", 408, E.TIMEOUT),  # HTTP only: a front end's request timeout
    ("RESOURCE_EXHAUSTED", 429, E.RATE_LIMIT),
    ("CANCELLED", 499, E.CANCELLED),
    ("INTERNAL", 500, E.SERVER_ERROR),
    ("UNIMPLEMENTED", 501, E.BAD_REQUEST),
    ("UNAVAILABLE", 503, E.OVERLOADED),
    ("DEADLINE_EXCEEDED", 504, E.TIMEOUT),
)
_BY_STATUS = {name: kind for name, _, kind in _ERROR_TABLE if name}
_BY_HTTP = {code: kind for _, code, kind in _ERROR_TABLE}
_AUTH_REASONS = frozenset({"API_KEY_INVALID"})  # ErrorInfo reason of a bad key, sent as 400 INVALID_ARGUMENT
_TOKEN_LIMIT = re.compile(r"token count .*exceeds|exceeds the maximum number of tokens", re.IGNORECASE)
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys((*_FILTERED, "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"), "content_filter"),
}


class GeminiStreamDecoder:
    """Incremental decoder of one Gemini SSE stream; implements ``StreamDecoder``."""

    def __init__(self, provider: str, model_id: str) -> None:
        self._provider, self._model = provider, model_id
        self._parser = SSEParser()
        self._held = HeldFailure()
        self._text: list[str] = []
        self._calls = 0
        self._finish: str | None = None
        self._usage = w.GUsage()

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far."""
        return "".join(self._text)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; ``MidStreamError`` on bad JSON or an in-band error.

        Events decoded before a failure in the same chunk are returned first; the failure is
        raised by the next ``feed`` or ``close``.
        """
        self._held.raise_pending()
        out: list[StreamEvent] = []
        try:
            for event in self._parser.feed(chunk):
                out.extend(self._data(event.data))
        except MidStreamError as exc:
            return self._held.hold(out, exc)
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended (Gemini sends no ``[DONE]``): flush, then usage and finish."""
        self._held.raise_pending()
        events = [e for event in self._parser.close() for e in self._data(event.data)]
        return events + self.finish()

    def apply(self, response: w.GResponse) -> list[StreamEvent]:
        """Events of one response object (a chunk, or a whole non-streamed answer)."""
        if response.error is not None:
            kind = error_kind(response.error.code, response.error)
            raise self._broken(kind, f"error in stream: {response.error.status} {response.error.message}")
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            detail = f"prompt blocked ({feedback.block_reason})"
            raise ProviderError(E.CONTENT_POLICY, self._provider, model=self._model, detail=detail)
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata
        events: list[StreamEvent] = []
        for candidate in response.candidates:
            if candidate.index != 0:  # only one candidate is ever asked for
                continue
            for part in candidate.content.parts if candidate.content is not None else ():
                self._part(part, events)
            if candidate.finish_reason:
                self._finish = candidate.finish_reason
        return events

    def finish(self) -> list[StreamEvent]:
        """Exactly one usage event then one finish; ``MidStreamError`` if no finish reason came."""
        if self._finish is None:
            raise self._broken(E.SERVER_ERROR, "the stream ended before a finish reason")
        reason = _FINISH.get(self._finish, "error")
        if reason == "stop" and self._calls:
            reason = "tool_calls"
        return [UsageEvent(usage_of(self._usage)), Finish(reason)]

    def _data(self, data: str) -> list[StreamEvent]:
        if not data.strip():
            return []
        try:
            response = w.RESPONSE_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            detail = f"malformed JSON in the event stream (within the first {self._parser.offset} bytes)"
            raise self._broken(E.SERVER_ERROR, detail) from exc
        return self.apply(response)

    def _part(self, part: w.GPart, events: list[StreamEvent]) -> None:
        if part.function_call is not None:
            call, index = part.function_call, self._calls
            self._calls += 1
            call_id = call.id or f"call_{index}"
            args = bytes(call.args).decode()
            args = "{}" if args.strip() == "null" else args
            events.append(ToolCallDelta(index, call_id, call.name, args))
            events.append(ToolCallDone(index, call_id, call.name, args, part.thought_signature or ""))
            return  # the signature rides on the call, not on a thinking event
        elif part.text and part.thought:
            events.append(ThinkingDelta(text=part.text))
        elif part.text:
            self._text.append(part.text)
            events.append(TextDelta(part.text))
        if part.thought_signature:
            events.append(ThinkingDelta(signature=part.thought_signature))

    def _broken(self, kind: ErrorClass, detail: str) -> MidStreamError:
        return MidStreamError(kind, self._provider, partial=self.partial_text, model=self._model, detail=detail)


def usage_of(usage: w.GUsage) -> Usage:
    """Canonical usage: cached prompt tokens apart from the rest, thinking counted as output."""
    cached = usage.cached_content_token_count
    return Usage(
        input_tokens=max(0, usage.prompt_token_count - cached) + usage.tool_use_prompt_token_count,
        output_tokens=usage.candidates_token_count + usage.thoughts_token_count,
        cache_read_tokens=cached,
    )


def error_kind(status: int, error: w.GErrorBody | None) -> ErrorClass:
    """The error table: the body's ``error.status`` first, the HTTP status second."""
    kind = _BY_STATUS.get(error.status) if error is not None else None
    if kind is None:
        kind = _BY_HTTP.get(status, E.SERVER_ERROR if status >= 500 else E.BAD_REQUEST)
    if error is not None and any(d.reason in _AUTH_REASONS for d in error.details):
        return E.AUTH
    if kind is E.BAD_REQUEST and error is not None and _TOKEN_LIMIT.search(error.message):
        return E.CONTEXT_LENGTH
    return kind

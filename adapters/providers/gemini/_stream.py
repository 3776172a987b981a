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
  (thinking is billed as output). Chunks repeat usage: the last report wins. A stream (or
  body) without ``usageMetadata`` gives no ``UsageEvent``: unknown, never zeros.
- Finish: STOP -> stop (tool_calls if functions were called), MAX_TOKENS -> length, the
  safety / recitation / blocklist family -> content_filter, any other reason -> error; the
  ``Finish`` keeps the raw ``finishReason`` and the ``modelVersion``.
- Only candidate 0 is read (one is ever asked for). Gemini sends no ``[DONE]``: the body's end
  gives the ``UsageEvent`` and the one ``Finish``. An in-band error or a body that ends
  before a finish reason raises ``MidStreamError`` with the text decoded so far; a blocked
  prompt is a ``ProviderError`` of kind ``content_policy``. Either error carries the usage
  reported before it (a blocked prompt's ``usageMetadata`` still counts its input).
- A malformed chunk (data that is not a ``GenerateContentResponse``) in an otherwise healthy
  stream is skipped and counted on the ``Finish`` (``MalformedEvents`` in ``_codec``).
  python-genai does not skip: ``HttpResponse.segments`` hands every ``data:`` payload to
  ``_load_json_from_response``, whose ``json.loads`` failure raises ``UnknownApiResponseError``
  and ends the stream; the one thing it passes over is a chunk that looks like an error but
  does not decode (``request_streamed`` logs it at debug level and yields it on). We skip
  because every chunk is a whole response: it repeats the usage so far (the last report
  wins) and a function call arrives whole in one chunk, so a lost chunk loses its own text and
  nothing after it. The stream still fails when the data shows a function call (a call would
  vanish), when it names an error (an error must not pass as a glitch), when the body is cut
  inside its last event, or past the bound. A lost final chunk loses the finish reason, and
  the close fails as before.
"""

from __future__ import annotations

import re

import msgspec

from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
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
from interlock.adapters.providers._codec import HeldFailure, MalformedEvents, scrub_key
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
# The message of the 429 sent when a project's prepaid credit is used up.
_PREPAY_DEPLETED = "prepayment credits are depleted"
_FUNCTION_CALL = re.compile(rb'"functionCall"\s*:')  # in a malformed chunk: a call would be lost
_TOKEN_LIMIT = re.compile(r"token count .*exceeds|exceeds the maximum number of tokens", re.IGNORECASE)
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys((*_FILTERED, "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"), "content_filter"),
}


class GeminiStreamDecoder:
    """Incremental decoder of one Gemini SSE stream; implements ``StreamDecoder``."""

    def __init__(self, provider: str, model_id: str, key: Secret | None = None) -> None:
        self._provider, self._model = provider, model_id
        self._key = key  # only to scrub it from error details
        self._parser = SSEParser()
        self._held = HeldFailure()
        self._text: list[str] = []
        self._calls = 0
        self._finish: str | None = None
        self._usage: w.GUsage | None = None  # None until a chunk reports usage: unknown, not zero
        self._served = ""  # the chunks' ``modelVersion``
        self._malformed = MalformedEvents()

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far."""
        return "".join(self._text)

    @property
    def usage_so_far(self) -> Usage | None:
        """The usage the provider reported so far (None if none): it rides on a broken connection's error."""
        return self._reported()

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; ``MidStreamError`` on an in-band error or an unskippable bad chunk.

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
        # Only an event without its blank line is left: if it does not decode, the body was cut in it.
        events = [e for event in self._parser.close() for e in self._data(event.data, True)]
        return events + self.finish()

    def apply(self, response: w.GResponse) -> list[StreamEvent]:
        """Events of one response object (a chunk, or a whole non-streamed answer)."""
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata
        if response.model_version:
            self._served = response.model_version
        if response.error is not None:
            kind = error_kind(response.error.code, response.error)
            raise self._broken(kind, f"error in stream: {response.error.status} {response.error.message}")
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            detail = f"prompt blocked ({feedback.block_reason})"
            usage = self._reported()
            raise ProviderError(E.CONTENT_POLICY, self._provider, model=self._model, detail=detail, usage=usage)
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
        """A usage event if usage was reported, then the one finish; ``MidStreamError`` if no finish reason came."""
        if self._finish is None:
            raise self._broken(E.SERVER_ERROR, "the stream ended before a finish reason")
        reason = _FINISH.get(self._finish, "error")
        if reason == "stop" and self._calls:
            reason = "tool_calls"
        finish = Finish(reason, self._malformed.count, self._finish, self._served)
        usage = self._reported()
        return [finish] if usage is None else [UsageEvent(usage), finish]

    def _reported(self) -> Usage | None:
        """The usage reported so far, canonical; None if no chunk carried any."""
        return usage_of(self._usage) if self._usage is not None else None

    def _data(self, data: str, cut: bool = False) -> list[StreamEvent]:
        if not data.strip():
            return []
        try:
            response = w.RESPONSE_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            where = f"within the first {self._parser.offset} bytes"
            if cut:
                raise self._broken(E.SERVER_ERROR, f"stream cut mid-event ({where})") from exc
            raw = data.encode("utf-8", "replace")
            structural = _FUNCTION_CALL.search(raw) is not None
            problem = self._malformed.refusal(raw, f"in the event stream ({where})", structural=structural)
            if problem is None:
                return []  # skipped, and counted on the Finish
            raise self._broken(E.SERVER_ERROR, problem) from exc
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
        detail = scrub_key(detail, self._key)
        # Usage reported before the failure was billed by the provider: it travels on the error.
        usage = self._reported()
        return MidStreamError(
            kind, self._provider, partial=self.partial_text, model=self._model, detail=detail, usage=usage
        )


def usage_of(usage: w.GUsage) -> Usage:
    """Canonical usage: cached prompt tokens apart from the rest, thinking counted as output."""
    cached = usage.cached_content_token_count
    return Usage(
        input_tokens=max(0, usage.prompt_token_count - cached) + usage.tool_use_prompt_token_count,
        output_tokens=usage.candidates_token_count + usage.thoughts_token_count,
        cache_read_tokens=cached,
    )


def error_kind(status: int, error: w.GErrorBody | None) -> ErrorClass:
    """The error table: the body's ``error.status`` first, the HTTP status second; then refinements.

    Gemini sends every exhausted limit as 429 ``RESOURCE_EXHAUSTED``, per-minute rate limits and
    spent quotas alike, each with a ``QuotaFailure`` detail and usually a ``RetryInfo``. It is
    ``quota`` (no retry soon helps) when it can be told apart: a violated quota whose window is a
    day (``quotaId`` ``...PerDay...``: it resets at midnight Pacific time, whatever ``retryDelay``
    says) or whose limit is 0 (the tier has no quota for the model), the prepaid credit used up,
    or HTTP 402. Every other ``RESOURCE_EXHAUSTED`` stays ``rate_limit``.
    """
    if status == 402 or (error is not None and _quota_spent(error)):
        return E.QUOTA
    kind = _BY_STATUS.get(error.status) if error is not None else None
    if kind is None:
        kind = _BY_HTTP.get(status, E.SERVER_ERROR if status >= 500 else E.BAD_REQUEST)
    if error is not None and any(d.reason in _AUTH_REASONS for d in error.details):
        return E.AUTH
    if kind is E.BAD_REQUEST and error is not None and _TOKEN_LIMIT.search(error.message):
        return E.CONTEXT_LENGTH
    return kind


def _quota_spent(error: w.GErrorBody) -> bool:
    if error.status != "RESOURCE_EXHAUSTED" and error.code != 429:
        return False
    if _PREPAY_DEPLETED in error.message.lower():
        return True
    return any(
        "PerDay" in v.quota_id or str(v.quota_value) == "0" for detail in error.details for v in detail.violations
    )

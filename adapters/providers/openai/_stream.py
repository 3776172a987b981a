"""The response side of the OpenAI Chat Completions codec: stream decoder and shared mappings.

Holds the incremental ``chat.completion.chunk`` decoder and what it shares with the non-streamed
path of ``_openai_codec``: usage normalization (``usage_of``), finish reasons (``finish_reason``),
the status table and the in-band error table (``status_kind``, ``error_kind``), and redaction of
error text (``describe``, ``redact``). The normalization rules are documented in ``_openai_codec``.

Stream rules: text, reasoning and tool-call fragments are emitted as they arrive, a
``delta.refusal`` as ``RefusalDelta`` (never text); the ``ToolCallDone`` of every call when the
choice's finish reason arrives; at ``data: [DONE]`` one ``UsageEvent`` if the server sent usage
(it arrives in its own chunk with empty ``choices``, after the finish reason; a stream without it
has no ``UsageEvent``, never zeros), then one ``Finish`` carrying the raw finish reason and the
chunks' ``model``. Any failure leaves as ``MidStreamError`` carrying the text decoded so far and
the usage, if a usage chunk came before it.

A malformed chunk (data that is not a chunk) in an otherwise healthy stream is skipped and counted
on the ``Finish`` (``MalformedEvents`` in ``_codec``). The openai-python SDK does not skip: its
``Stream.__stream__`` calls ``sse.json()`` (``json.loads``) on every event before ``[DONE]``, so one
malformed line ends the iteration with a ``JSONDecodeError``; it skips only what the SSE rules
drop (unknown fields, comments, events with nothing in them). We skip because each chunk is a
self-contained delta: losing one loses at most its own text, which the count makes visible. The
stream still fails when the lost chunk was part of something being assembled: while a tool
call's arguments are streaming (a lost fragment would corrupt them), or when the data shows a
tool call, a legacy function call or a usage object (a lost call, or a cost recorded as zero);
and when it names an error, when the body is cut inside its last event, or past the bound.

Each event's data goes to msgspec as the bytes it came in; only data that msgspec refuses (blank,
padded with non-JSON whitespace, invalid UTF-8, malformed) takes the text path, stripped and with
invalid UTF-8 replaced, so the outcome is the one a text-first decoder would reach.
"""

from __future__ import annotations

import re

import msgspec

from interlock._errors import ErrorClass, MidStreamError
from interlock._secret import Secret
from interlock._types import Finish as FinishEvent
from interlock._types import (
    FinishReason,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import HeldFailure, MalformedEvents
from interlock.adapters.providers._sse import SSEParser
from interlock.adapters.providers.openai._wire import (
    CHUNK_DECODER,
    WireChunk,
    WireDelta,
    WireError,
    WireToolCallDelta,
    WireUsage,
)

__all__ = [
    "QUOTA_CODES",
    "OpenAIStreamDecoder",
    "describe",
    "error_kind",
    "finish_reason",
    "redact",
    "status_kind",
    "usage_of",
]

# The account is out of credit or over a spend limit: OpenAI sends a 429 whose error type (and
# often code) is ``insufficient_quota``; the codes name which limit. Waiting does not help.
QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)
# HTTP status -> error class; statuses not listed fall back by range (see ``status_kind``).
_STATUS: dict[int, ErrorClass] = {
    400: ErrorClass.BAD_REQUEST,
    401: ErrorClass.AUTH,
    402: ErrorClass.QUOTA,  # compatible servers: DeepSeek's "Insufficient Balance", OpenRouter's "insufficient credits"
    403: ErrorClass.AUTH,
    404: ErrorClass.BAD_REQUEST,
    408: ErrorClass.TIMEOUT,
    413: ErrorClass.BAD_REQUEST,
    422: ErrorClass.BAD_REQUEST,
    429: ErrorClass.RATE_LIMIT,
    500: ErrorClass.SERVER_ERROR,
    502: ErrorClass.SERVER_ERROR,
    503: ErrorClass.OVERLOADED,
    504: ErrorClass.TIMEOUT,
    529: ErrorClass.OVERLOADED,
}
# An in-band error (stream chunk or 200 body): its code, else its type, names the class.
_INBAND_CODES: dict[str, ErrorClass] = {
    "context_length_exceeded": ErrorClass.CONTEXT_LENGTH,
    "content_policy_violation": ErrorClass.CONTENT_POLICY,
    "content_filter": ErrorClass.CONTENT_FILTER,  # mid-answer: the output was stopped
    "rate_limit_exceeded": ErrorClass.RATE_LIMIT,
    "rate_limit_error": ErrorClass.RATE_LIMIT,
    **dict.fromkeys(QUOTA_CODES, ErrorClass.QUOTA),
    "invalid_request_error": ErrorClass.BAD_REQUEST,
    "invalid_api_key": ErrorClass.AUTH,
    "authentication_error": ErrorClass.AUTH,
    "permission_error": ErrorClass.AUTH,
    "server_error": ErrorClass.SERVER_ERROR,
    "api_error": ErrorClass.SERVER_ERROR,
    "overloaded_error": ErrorClass.OVERLOADED,
    "service_unavailable": ErrorClass.OVERLOADED,
    "timeout": ErrorClass.TIMEOUT,
}
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # legacy functions API
}
_DETAIL_LIMIT = 200
# What a malformed chunk's data may show it carried that cannot be lost: a tool call or a legacy
# function call (its fragments), a usage object (the cost). ``null`` values, which some servers
# send in every chunk, do not match.
_STRUCTURAL = re.compile(rb'"(?:tool_calls|function_call)"\s*:\s*[\[{]|"usage"\s*:\s*\{')


def status_kind(status: int) -> ErrorClass:
    """Class of an HTTP status: the table, else any other 4xx is a bad request and the rest a server error."""
    known = _STATUS.get(status)
    if known is not None:
        return known
    return ErrorClass.BAD_REQUEST if 400 <= status < 500 else ErrorClass.SERVER_ERROR


def error_kind(err: WireError) -> ErrorClass:
    """Class of an in-band error: named code, then type, then an integer code read as a status."""
    for name in (err.code, err.type):
        if isinstance(name, str) and name in _INBAND_CODES:
            return _INBAND_CODES[name]
    return status_kind(err.code) if isinstance(err.code, int) else ErrorClass.SERVER_ERROR


def usage_of(wire: WireUsage) -> Usage:
    """OpenAI usage -> canonical usage; ``prompt_tokens`` includes the cached tokens it reports."""
    prompt = wire.prompt_tokens or 0
    details = wire.prompt_tokens_details
    cached = details.cached_tokens if details is not None and details.cached_tokens is not None else None
    if cached is None:
        cached = wire.prompt_cache_hit_tokens or 0
    cached = min(max(cached, 0), prompt)
    return Usage(input_tokens=prompt - cached, output_tokens=wire.completion_tokens or 0, cache_read_tokens=cached)


def finish_reason(reason: str, *, has_calls: bool) -> FinishReason:
    # An unknown reason from a compatible server ends the answer normally.
    mapped = _FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def redact(text: str, key: Secret | None) -> str:
    """Error text made safe and short: servers may echo what they were sent, never the key."""
    secret = key.reveal() if key is not None else ""
    if secret:
        text = text.replace(secret, "****")
    return text[:_DETAIL_LIMIT]


def describe(err: WireError, key: Secret | None) -> str:
    """``code: message`` of a wire error, redacted."""
    label = str(err.code) if err.code is not None else (err.type or "")
    return redact(f"{label}: {err.message}" if label and err.message else (label or err.message), key)


class _ToolCallState(msgspec.Struct):
    """The parts of one streamed tool call received so far (mutable, decoder-private)."""

    id: str = ""
    name: str = ""
    arguments: list[str] = []


class OpenAIStreamDecoder:
    """Incremental decoder of one ``chat.completion.chunk`` stream; see ``StreamDecoder``."""

    __slots__ = (
        "_calls",
        "_compatible",
        "_done",
        "_finish",
        "_held",
        "_key",
        "_malformed",
        "_model",
        "_parser",
        "_provider",
        "_raw_finish",
        "_served",
        "_text",
        "_usage",
    )

    def __init__(self, provider: str, model_id: str, key: Secret | None, *, compatible: bool) -> None:
        self._provider = provider
        self._model = model_id
        self._key = key
        self._compatible = compatible
        self._parser = SSEParser()
        self._text: list[str] = []
        self._calls: dict[int, _ToolCallState] = {}
        self._finish: FinishReason | None = None
        self._raw_finish = ""  # the finish reason as the server spelled it
        self._served = ""  # the chunks' ``model``: who the server says answered
        self._usage: Usage | None = None  # None until a usage chunk came: unknown, not zero
        self._done = False
        self._held = HeldFailure()
        self._malformed = MalformedEvents()

    @property
    def partial_text(self) -> str:
        """The answer text decoded so far."""
        return "".join(self._text)

    @property
    def usage_so_far(self) -> Usage | None:
        """The usage the provider reported so far (None if none): it rides on a broken connection's error."""
        return self._usage

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a network chunk; raises ``MidStreamError`` on an in-band error or bad JSON."""
        self._held.raise_pending()
        out: list[StreamEvent] = []
        if not self._done:
            try:
                for _, data in self._parser.feed_raw(chunk):
                    self._on_data(data, out, cut=False)
                    if self._done:
                        break
            except MidStreamError as exc:
                return self._held.hold(out, exc)
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended; raises ``MidStreamError`` unless the answer finished."""
        self._held.raise_pending()
        out: list[StreamEvent] = []
        if self._done:
            return out
        for _, data in self._parser.close_raw():
            self._on_data(data, out, cut=True)
            if self._done:
                return out
        if self._finish is not None and self._compatible:
            # Several compatible servers end the body after the last chunk without [DONE].
            self._done = True
            return [*out, *self._final()]
        problem = "stream closed without [DONE]" if self._finish else "stream closed before the answer finished"
        raise self._error(ErrorClass.SERVER_ERROR, f"{problem} (byte {self._parser.offset})")

    def _error(self, kind: ErrorClass, detail: str) -> MidStreamError:
        # Usage that came before the failure was billed by the provider: it travels on the error.
        return MidStreamError(
            kind, self._provider, partial=self.partial_text, model=self._model, detail=detail, usage=self._usage
        )

    def _on_data(self, data: bytes, out: list[StreamEvent], *, cut: bool) -> None:
        if data == b"[DONE]":
            self._done = True
            out.extend(self._final())
            return
        try:
            # msgspec reads the bytes as they came; anything it refuses takes the text path below.
            chunk: WireChunk | None = CHUNK_DECODER.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            chunk = self._decode_text(data.decode("utf-8", "replace"), out, cut=cut)
        if chunk is None:
            return
        # The fields as_error reads, tested first: most chunks carry no error, and building
        # the error view of each one cost nearly as much as decoding it.
        if chunk.error is not None or chunk.message is not None or chunk.object == "error":
            err = chunk.as_error()
            if err is not None:
                raise self._error(error_kind(err), describe(err, self._key))
        if chunk.model:
            self._served = chunk.model
        usage = chunk.usage or (chunk.x_groq.usage if chunk.x_groq is not None else None)
        if usage is not None:
            self._usage = usage_of(usage)
        for choice in chunk.choices:
            # One choice is asked for; anything after its finish reason is ignored.
            if choice.index == 0 and self._finish is None:
                self._on_delta(choice.delta, out)
                if choice.finish_reason:
                    self._on_finish(choice.finish_reason, out)

    def _decode_text(self, text: str, out: list[StreamEvent], *, cut: bool) -> WireChunk | None:
        """The data as text, stripped: blank, ``[DONE]`` (None), or a chunk; invalid UTF-8 is replaced."""
        payload = text.strip()
        if not payload:
            return None
        if payload == "[DONE]":
            self._done = True
            out.extend(self._final())
            return None
        try:
            return CHUNK_DECODER.decode(payload)
        except msgspec.DecodeError as exc:
            where = f"from {self._provider} at stream byte offset {self._parser.offset}"
            if cut:
                problem: str | None = f"stream cut mid-event {where}"
            else:
                raw = payload.encode("utf-8", "replace")
                problem = self._malformed.refusal(raw, where, structural=self._assembling(raw))
            if problem is None:
                return None  # skipped, and counted on the Finish
            # msgspec's message names a position or a field, never the key; redact all the same
            raise self._error(ErrorClass.SERVER_ERROR, redact(f"{problem}: {exc}", self._key)) from exc

    def _assembling(self, raw: bytes) -> bool:
        """True when a malformed chunk may have carried part of a tool call or the usage."""
        return bool(self._calls and self._finish is None) or _STRUCTURAL.search(raw) is not None

    def _on_delta(self, delta: WireDelta, out: list[StreamEvent]) -> None:
        thinking = delta.reasoning_content or delta.reasoning
        if thinking:
            out.append(ThinkingDelta(thinking))
        if delta.content:
            self._text.append(delta.content)
            out.append(TextDelta(delta.content))
        if delta.refusal:
            out.append(RefusalDelta(delta.refusal))
        if delta.tool_calls:
            for fragment in delta.tool_calls:
                self._on_fragment(fragment, out)
        if delta.function_call is not None:
            self._on_fragment(WireToolCallDelta(index=0, function=delta.function_call), out)

    def _on_fragment(self, fragment: WireToolCallDelta, out: list[StreamEvent]) -> None:
        index = self._index_of(fragment)
        state = self._calls.setdefault(index, _ToolCallState())
        name = fragment.function.name if fragment.function is not None else None
        arguments = (fragment.function.arguments if fragment.function is not None else None) or ""
        # id and name arrive whole on the first fragment; a server that repeats them is not appended.
        state.id = state.id or fragment.id or ""
        state.name = state.name or name or ""
        state.arguments.append(arguments)
        out.append(ToolCallDelta(index, id=fragment.id or None, name=name or None, arguments=arguments))

    def _index_of(self, fragment: WireToolCallDelta) -> int:
        if fragment.index is not None:
            return fragment.index
        # Servers that omit the index send one call at a time: a new id starts the next call.
        if fragment.id and all(c.id != fragment.id for c in self._calls.values()):
            return len(self._calls)
        return max(self._calls, default=0)

    def _on_finish(self, reason: str, out: list[StreamEvent]) -> None:
        self._finish = finish_reason(reason, has_calls=bool(self._calls))
        self._raw_finish = reason
        for index in sorted(self._calls):
            c = self._calls[index]
            out.append(ToolCallDone(index, c.id or f"call_{index}", c.name, "".join(c.arguments)))

    def _final(self) -> list[StreamEvent]:
        if self._finish is None:
            raise self._error(ErrorClass.SERVER_ERROR, "stream ended without a finish reason")
        finish = FinishEvent(self._finish, self._malformed.count, self._raw_finish, self._served)
        return [finish] if self._usage is None else [UsageEvent(self._usage), finish]

"""The Google Gemini codec: canonical requests <-> ``generateContent`` JSON and its SSE stream.

Paths hang off a base URL without version (``/v1beta/models/{model}:generateContent``,
``...:streamGenerateContent?alt=sse``); the key travels in ``x-goog-api-key``. Decisions,
each pinned by tests/test_codec_gemini.py:

- Roles: user and tool -> ``user``, assistant -> ``model``; adjacent turns of one role merge
  (parallel function responses belong in one turn); system text -> ``systemInstruction``.
  A tool result is a ``functionResponse`` named after the nearest earlier call of its id,
  with ``response`` ``{"output": text}`` or, if ``is_error``, ``{"error": text}``.
- A tool without declared properties is sent without ``parameters``; ``parallel_tool_calls``
  has no Gemini setting. Function calls arrive whole: a ``ToolCallDelta`` and a
  ``ToolCallDone`` each, with Gemini's ``id`` or ``call_<n>`` (n-th call of the answer).
- Usage: ``promptTokenCount`` includes ``cachedContentTokenCount``: input = prompt - cached
  (+ ``toolUsePromptTokenCount``), cache_read = cached, output = candidates + thoughts
  (thinking is billed as output). Chunks repeat usage: the last report wins.
- Finish: STOP -> stop (tool_calls if functions were called), MAX_TOKENS -> length, the
  safety / recitation / blocklist family -> content_filter, any other reason -> error.
- A function call's ``thoughtSignature`` travels on ``ToolCallDone.signature`` (and the
  answer's ``ToolCall.signature``) and is sent back on the ``ToolCallPart`` of later turns, as
  Gemini requires for multi-turn function calling with thinking models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import msgspec

from interlock._errors import ErrorClass, MidStreamError, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    Finish,
    FinishReason,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import HeldFailure, WireRequest
from interlock.adapters.providers._retry_after import parse_retry_after
from interlock.adapters.providers._sse import SSEParser
from interlock.adapters.providers.gemini import _wire as w
from interlock.adapters.providers.gemini._schema import function_declarations, to_gemini_schema

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
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys((*_FILTERED, "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"), "content_filter"),
}
_ROLES = {"user": "user", "tool": "user", "assistant": "model"}
_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.DOTALL)


class GeminiCodec:
    """Pure mapping between canonical types and the Gemini API; implements ``Codec``."""

    def __init__(
        self,
        provider: str,
        api_key: Secret | None,
        *,
        api_version: str = "v1beta",
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self._key = api_key
        self._version = api_version
        self._extra = dict(extra_headers or {})

    def __repr__(self) -> str:
        return f"GeminiCodec({self.provider!r}, api_version={self._version!r})"

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        """Build a (streamed) generateContent request; ``RequestError`` for what Gemini cannot take."""
        system, contents = _contents(request.messages)
        body = w.GRequest(
            contents=contents,
            system_instruction=system,
            tools=function_declarations(request.tools, self.provider),
            tool_config=_tool_config(request),
            generation_config=_generation_config(request, self.provider),
        )
        model = quote(model_id.removeprefix("models/"), safe="-._")
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = f"/{self._version}/models/{model}:{verb}"
        return WireRequest("POST", path, self._headers(json_body=True), w.ENCODER.encode(body))

    def probe_request(self) -> WireRequest:
        """List models: cheap, and fails with 400/403 on a bad key."""
        return WireRequest("GET", f"/{self._version}/models", self._headers(json_body=False))

    def stream_decoder(self, model_id: str) -> GeminiStreamDecoder:
        """A fresh decoder for one ``streamGenerateContent?alt=sse`` body."""
        return GeminiStreamDecoder(self.provider, model_id)

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        """Decode a whole generateContent body into the events a stream would give."""
        try:
            response = w.RESPONSE_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            detail = f"malformed JSON response body ({len(body)} bytes)"
            raise ProviderError(E.SERVER_ERROR, self.provider, model=model_id, detail=detail) from exc
        decoder = GeminiStreamDecoder(self.provider, model_id)
        return decoder.apply(response) + decoder.finish()

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        """Map a failed call to a typed error; retry hint from headers or RetryInfo, the longer."""
        error = _error_body(body)
        kind = error_kind(status, error)
        hints = [h for h in (parse_retry_after(headers), _retry_delay(error)) if h is not None]
        detail = error.message if error is not None else body[:200].decode("utf-8", errors="replace")
        if self._key is not None and self._key.reveal():
            detail = detail.replace(self._key.reveal(), "****")
        return ProviderError(
            kind, self.provider, model=model_id, status=status, retry_after=max(hints, default=None), detail=detail
        )

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        headers = dict(self._extra)
        if json_body:
            headers["content-type"] = "application/json"
        if self._key is not None:
            headers["x-goog-api-key"] = self._key.reveal()
        return headers


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


def _error_body(body: bytes) -> w.GErrorBody | None:
    try:
        decoded = w.ERROR_DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, list):
        return decoded[0].error if decoded else None
    return decoded.error


def _retry_delay(error: w.GErrorBody | None) -> float | None:
    for detail in error.details if error is not None else ():
        match = _DURATION.match(detail.retry_delay)
        if detail.type.endswith("google.rpc.RetryInfo") and match:
            return float(match.group(1))
    return None


# -- request encoding ----------------------------------------------------------------------------


def _contents(messages: Sequence[Message]) -> tuple[w.GContent | None, tuple[w.GContent, ...]]:
    system: list[w.GPart] = []
    turns: list[tuple[str, list[w.GPart]]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            system.extend(_system_part(part, i, j) for j, part in enumerate(message.content))
            continue
        role = _ROLES[message.role]
        parts = [_part(messages, part, i, j) for j, part in enumerate(message.content)]
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)
        else:
            turns.append((role, parts))
    instruction = w.GContent(parts=tuple(system)) if system else None
    return instruction, tuple(w.GContent(parts=tuple(parts), role=role) for role, parts in turns)


def _system_part(part: Part, i: int, j: int) -> w.GPart:
    if not isinstance(part, TextPart):
        raise RequestError(f"messages[{i}].content[{j}]", "a Gemini system instruction takes text only")
    return w.GPart(text=part.text)


def _part(messages: Sequence[Message], part: Part, i: int, j: int) -> w.GPart:
    where = f"messages[{i}].content[{j}]"
    match part:
        case TextPart(text=text):
            return w.GPart(text=text)
        case ImagePart(url=url, data=data, media_type=media_type):
            if data is not None:
                return w.GPart(inline_data=w.GBlob(mime_type=media_type, data=data))
            if url is not None and (inline := _DATA_URL.match(url)):
                return w.GPart(inline_data=w.GBlob(mime_type=inline.group(1), data=inline.group(2)))
            if url is not None:
                return w.GPart(file_data=w.GFileData(file_uri=url, mime_type=media_type))
            raise RequestError(where, "an image needs a url or data")
        case ToolCallPart(id=call_id, name=name, arguments=arguments, signature=signature):
            call = w.GFunctionCall(name=name, args=_args(arguments, where), id=call_id or None)
            return w.GPart(function_call=call, thought_signature=signature or None)
        case ToolResultPart(tool_call_id=call_id, content=content, is_error=is_error):
            output = w.GToolOutput(error=content) if is_error else w.GToolOutput(output=content)
            name = _call_name(messages, i, call_id, where)
            return w.GPart(function_response=w.GFunctionResponse(name=name, response=output, id=call_id or None))
    raise RequestError(where, f"unsupported part {type(part).__name__}")  # pragma: no cover


def _args(arguments: str, where: str) -> msgspec.Raw:
    if not arguments.strip():
        return msgspec.Raw(b"{}")
    try:
        parsed = msgspec.json.decode(arguments)
    except msgspec.DecodeError as exc:
        raise RequestError(f"{where}.arguments", "tool call arguments are not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise RequestError(f"{where}.arguments", "Gemini takes tool call arguments as a JSON object")
    return msgspec.Raw(arguments.encode())


def _call_name(messages: Sequence[Message], i: int, call_id: str, where: str) -> str:
    """Gemini answers a call by function name: take it from the nearest earlier call of this id."""
    for message in reversed(messages[:i]):
        for part in reversed(message.content):
            if isinstance(part, ToolCallPart) and part.id == call_id:
                return part.name
    raise RequestError(f"{where}.tool_call_id", f"no earlier tool call has id {call_id!r}")


def _tool_config(request: ChatRequest) -> w.GToolConfig | None:
    choice = request.tool_choice
    names = {tool.name for tool in request.tools}
    if isinstance(choice, ToolChoiceNamed):
        if choice.name not in names:
            raise RequestError("tool_choice", f"tool {choice.name!r} is not among the request's tools")
        config = w.GFunctionCallingConfig(mode="ANY", allowed_function_names=(choice.name,))
    elif isinstance(choice, ToolChoiceMode) and request.tools:
        config = w.GFunctionCallingConfig(mode={"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode])
    elif isinstance(choice, ToolChoiceMode) and choice.mode == "required":
        raise RequestError("tool_choice", "a tool call is required but the request has no tools")
    else:
        return None
    return w.GToolConfig(function_calling_config=config)


def _generation_config(request: ChatRequest, provider: str) -> w.GGenerationConfig | None:
    mime, schema = None, None
    match request.response_format:
        case JsonObjectFormat():
            mime = "application/json"
        case JsonSchemaFormat(name=name, schema=raw):
            mime, subject = "application/json", f"response format {name!r}"
            field = "response_format.schema"
            schema = to_gemini_schema(raw, field=field, subject=subject, provider=provider, order_properties=True)
    config = w.GGenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_tokens,
        stop_sequences=request.stop or None,
        seed=request.seed,
        response_mime_type=mime,
        response_schema=schema,
    )
    return config if config != w.GGenerationConfig() else None

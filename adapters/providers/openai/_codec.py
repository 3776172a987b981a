"""The OpenAI Chat Completions codec, also used for OpenAI-compatible servers.

Paths are relative to a base URL that includes ``/v1``: ``POST /chat/completions`` for calls and
``GET /models`` for the health probe. ``compatible=True`` (vLLM, Ollama, LM Studio, OpenRouter,
Groq, DeepSeek...) sends ``max_tokens`` instead of ``max_completion_tokens`` and lets a stream that
closes without ``data: [DONE]`` end normally once a finish reason was seen.

Usage normalization: OpenAI's ``prompt_tokens`` INCLUDES ``prompt_tokens_details.cached_tokens``.
The canonical ``Usage`` keeps the buckets apart so cost never double counts::

    input_tokens      = prompt_tokens - cached_tokens     (uncached input only)
    cache_read_tokens = cached_tokens                     (DeepSeek: prompt_cache_hit_tokens)
    cache_write_tokens = 0                                (OpenAI bills no cache writes)
    output_tokens     = completion_tokens

so ``Usage.total_input_tokens == prompt_tokens``. Servers without details report no cache hits.

Other mappings: ``reasoning_content`` / ``reasoning`` become ``ThinkingDelta``; a ``refusal`` is
a ``RefusalDelta``, never answer text; the ``Finish`` keeps the raw ``finish_reason`` and the
response's ``model``; a body without ``usage`` gives no ``UsageEvent`` (unknown, not zero); a
legacy ``function_call`` is tool call 0 and its finish reason is ``tool_calls``, as is ``stop``
when tool calls were made (OpenAI says ``stop`` for a forced named tool); a tool call without an
id gets ``call_<index>``; a tool result with ``is_error`` is prefixed ``Error: `` (the wire has
no flag); ``cache_breakpoint`` is ignored (OpenAI caches prefixes by itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    TextFormat,
    TextPart,
    ThinkingDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoiceNamed,
    ToolResultPart,
    UsageEvent,
)
from interlock._types import Finish as FinishEvent
from interlock.adapters.providers._codec import WireRequest
from interlock.adapters.providers._retry_after import parse_retry_after
from interlock.adapters.providers.openai._stream import (
    QUOTA_CODES,
    OpenAIStreamDecoder,
    describe,
    error_kind,
    finish_reason,
    redact,
    status_kind,
    usage_of,
)
from interlock.adapters.providers.openai._wire import (
    COMPLETION_DECODER,
    ERROR_DECODER,
    REQUEST_ENCODER,
    WireAssistantMessage,
    WireChatRequest,
    WireContentPart,
    WireError,
    WireFunctionCall,
    WireFunctionDef,
    WireFunctionName,
    WireImagePart,
    WireImageURL,
    WireJsonObjectFormat,
    WireJsonSchema,
    WireJsonSchemaFormat,
    WireMessage,
    WireNamedToolChoice,
    WireStreamOptions,
    WireSystemMessage,
    WireTextPart,
    WireTool,
    WireToolCall,
    WireToolMessage,
    WireUserMessage,
)
from interlock.policies._reasoning import effort_of

__all__ = ["OpenAICodec"]

# A 400 whose error code (or type) names something more precise than a bad request.
_BAD_REQUEST_CODES: dict[str, ErrorClass] = {
    "context_length_exceeded": ErrorClass.CONTEXT_LENGTH,
    "content_policy_violation": ErrorClass.CONTENT_POLICY,
    "content_filter": ErrorClass.CONTENT_POLICY,
}
# A retry hint only means something for a failure that a later retry may not repeat.
_RETRYABLE = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.OVERLOADED, ErrorClass.SERVER_ERROR, ErrorClass.TIMEOUT})


class OpenAICodec:
    """Pure mapping between canonical types and the Chat Completions wire format."""

    __slots__ = ("_api_key", "_compatible", "_extra_headers", "provider")

    def __init__(
        self,
        provider: str,
        api_key: Secret | None,
        *,
        compatible: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self._api_key = api_key
        self._compatible = compatible
        self._extra_headers = dict(extra_headers or {})

    def __repr__(self) -> str:
        # Extra headers may hold credentials too: show their names only.
        return (
            f"OpenAICodec(provider={self.provider!r}, compatible={self._compatible}, "
            f"api_key={self._api_key!r}, extra_headers={sorted(self._extra_headers)})"
        )

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        """Build ``POST /chat/completions``; raises ``RequestError`` for what the wire cannot carry."""
        tools = [WireTool(WireFunctionDef(t.name, t.description or None, t.parameters)) for t in request.tools]
        max_tokens = request.max_tokens
        body = WireChatRequest(
            model=model_id,
            messages=_encode_messages(request.messages),
            tools=tools or None,
            tool_choice=_tool_choice(request),
            # OpenAI rejects parallel_tool_calls on a request without tools.
            parallel_tool_calls=request.parallel_tool_calls if tools else None,
            response_format=_response_format(request),
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(request.stop) or None,
            seed=request.seed,
            max_completion_tokens=None if self._compatible else max_tokens,
            max_tokens=max_tokens if self._compatible else None,
            reasoning_effort=effort_of(request.reasoning) if request.reasoning is not None else None,
            stream=True if stream else None,
            stream_options=WireStreamOptions(include_usage=True) if stream else None,
        )
        accept = "text/event-stream" if stream else "application/json"
        return WireRequest("POST", "/chat/completions", self._headers(accept), REQUEST_ENCODER.encode(body))

    def stream_decoder(self, model_id: str) -> OpenAIStreamDecoder:
        """A fresh decoder for one streamed response."""
        return OpenAIStreamDecoder(self.provider, model_id, self._api_key, compatible=self._compatible)

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        """Decode a ``chat.completion`` body into the events a stream of it would end with."""
        try:
            wire = COMPLETION_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise ProviderError(
                ErrorClass.SERVER_ERROR, self.provider, model=model_id, detail=f"malformed JSON from {self.provider}"
            ) from exc
        usage = usage_of(wire.usage) if wire.usage is not None else None
        err = wire.as_error()
        if err is not None:
            detail = describe(err, self._api_key)
            raise ProviderError(error_kind(err), self.provider, model=model_id, detail=detail, usage=usage)
        choice = next((c for c in wire.choices if c.index == 0), None)
        if choice is None:
            detail = "response has no choices"
            raise ProviderError(ErrorClass.SERVER_ERROR, self.provider, model=model_id, detail=detail)
        msg = choice.message
        events: list[StreamEvent] = []
        thinking = msg.reasoning_content or msg.reasoning
        if thinking:
            events.append(ThinkingDelta(thinking))
        if msg.content:
            events.append(TextDelta(msg.content))
        if msg.refusal:
            events.append(RefusalDelta(msg.refusal))
        calls = [(c.id, c.function) for c in msg.tool_calls or () if c.function is not None]
        if msg.function_call is not None:
            calls = [("", msg.function_call)]
        for i, (call_id, fn) in enumerate(calls):
            events.append(ToolCallDone(i, call_id or f"call_{i}", fn.name or "", fn.arguments or ""))
        raw = choice.finish_reason or ""
        reason = finish_reason(raw or "stop", has_calls=bool(calls))
        if usage is not None:
            events.append(UsageEvent(usage))
        events.append(FinishEvent(reason, provider_reason=raw, served_model=wire.model))
        return events

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        """Map an HTTP failure to a typed error through the status table, refined by the error code.

        A quota error (``insufficient_quota`` as the type or code, OpenAI's 429 when the account
        has no credit or hit a spend limit) is ``quota`` with no retry hint, whatever the status.
        """
        err = _decode_error(body)
        kind = status_kind(status)
        if err is not None and (err.type in QUOTA_CODES or err.code in QUOTA_CODES):
            kind = ErrorClass.QUOTA
        elif status == 400 and err is not None:
            kind = _BAD_REQUEST_CODES.get(str(err.code), _BAD_REQUEST_CODES.get(err.type or "", kind))
        if err is not None:
            detail = describe(err, self._api_key)
        else:
            detail = redact(body.decode("utf-8", errors="replace").strip(), self._api_key)
        retry_after = parse_retry_after(headers) if kind in _RETRYABLE else None
        return ProviderError(kind, self.provider, model=model_id, status=status, retry_after=retry_after, detail=detail)

    def probe_request(self) -> WireRequest:
        """``GET /models``: cheap, authenticated, and served by every compatible server."""
        return WireRequest("GET", "/models", self._headers("application/json"))

    def _headers(self, accept: str) -> dict[str, str]:
        headers = dict(self._extra_headers)
        headers["Content-Type"] = "application/json"
        headers["Accept"] = accept
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers


def _decode_error(body: bytes) -> WireError | None:
    try:
        return ERROR_DECODER.decode(body).as_error()
    except msgspec.DecodeError:
        return None


# -- request encoding ------------------------------------------------------------------------


def _encode_messages(messages: tuple[Message, ...]) -> list[WireMessage]:
    out: list[WireMessage] = []
    for i, msg in enumerate(messages):
        out.extend(_encode_message(msg, f"messages[{i}]"))
    return out


def _encode_message(msg: Message, field: str) -> list[WireMessage]:
    """One canonical message -> its tool results (as ``role: tool`` turns) then the turn itself."""
    results: list[WireMessage] = []
    parts: list[WireContentPart] = []
    calls: list[WireToolCall] = []
    for j, part in enumerate(msg.content):
        match part:
            case TextPart(text=text):
                parts.append(WireTextPart(text))
            case ImagePart():
                parts.append(WireImagePart(WireImageURL(_image_url(part, f"{field}.content[{j}]"))))
            case ToolCallPart(id=call_id, name=name, arguments=arguments):
                calls.append(WireToolCall(call_id, WireFunctionCall(name, arguments)))
            case ToolResultPart(tool_call_id=call_id, content=content, is_error=is_error):
                results.append(WireToolMessage(f"Error: {content}" if is_error else content, call_id))
    _check_parts(msg, field, parts, bool(calls), bool(results))
    joined = "".join(p.text for p in parts if isinstance(p, WireTextPart))
    match msg.role:
        case "system":
            return [WireSystemMessage(joined)]
        case "assistant":
            return [WireAssistantMessage(content=joined or None, tool_calls=calls or None)]
        case "user" if parts or not results:
            has_image = any(isinstance(p, WireImagePart) for p in parts)
            return [*results, WireUserMessage(parts if has_image else joined)]
    return results


def _check_parts(msg: Message, field: str, parts: list[WireContentPart], calls: bool, results: bool) -> None:
    if calls and msg.role != "assistant":
        raise RequestError(f"{field}.content", "only assistant messages carry tool calls")
    if results and msg.role not in ("user", "tool"):
        raise RequestError(f"{field}.content", "tool results go in user or tool messages")
    if msg.role != "user" and any(isinstance(p, WireImagePart) for p in parts):
        raise RequestError(f"{field}.content", "only user messages carry images")
    if msg.role == "tool" and parts:
        raise RequestError(f"{field}.content", "a tool message holds tool results only")


def _image_url(part: ImagePart, field: str) -> str:
    if part.url:
        return part.url
    if part.data:
        return f"data:{part.media_type};base64,{part.data}"
    raise RequestError(field, "an image needs a url or base64 data")


def _tool_choice(request: ChatRequest) -> Literal["auto", "none", "required"] | WireNamedToolChoice | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if isinstance(choice, ToolChoiceNamed):
        if choice.name not in {t.name for t in request.tools}:
            raise RequestError("tool_choice", f"names tool {choice.name!r}, which the request does not offer")
        return WireNamedToolChoice(WireFunctionName(choice.name))
    # OpenAI rejects tool_choice on a request without tools; without tools every mode means none.
    return choice.mode if request.tools else None


def _response_format(request: ChatRequest) -> WireJsonObjectFormat | WireJsonSchemaFormat | None:
    match request.response_format:
        case JsonObjectFormat():
            return WireJsonObjectFormat()
        case JsonSchemaFormat(name=name, schema=schema, strict=strict):
            return WireJsonSchemaFormat(WireJsonSchema(name, schema, strict))
        case TextFormat() | None:
            return None
    return None

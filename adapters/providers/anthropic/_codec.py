"""The Anthropic Messages codec: canonical requests to ``POST /v1/messages`` and back.

Requests: system messages are lifted to the top-level ``system`` list (text blocks, so a cache
breakpoint can sit on the last one); tool messages become user turns of ``tool_result`` blocks;
consecutive same-role turns are merged, since the API wants them alternating. ``max_tokens`` is
mandatory here, so ``default_max_tokens`` fills in. ``seed`` has no counterpart and is not sent;
``json_object`` output has no faithful mapping (structured outputs need a schema): RequestError.

Usage: Anthropic's ``input_tokens`` EXCLUDES ``cache_creation_input_tokens`` and
``cache_read_input_tokens`` (the prompt total is the sum of the three), which is the canonical
split already: input = input_tokens, cache_write = cache_creation, cache_read = cache_read, with
nothing subtracted. ``message_start`` carries the input side; ``message_delta`` counts are
cumulative and override whatever they repeat. A response that carries no usage gives no
``UsageEvent``: unknown, never zeros.

Responses: the stream decoder and the mappings both paths share live in ``_stream``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, final

import msgspec

from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
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
)
from interlock.adapters.providers._codec import WireRequest
from interlock.adapters.providers._retry_after import parse_retry_after
from interlock.adapters.providers.anthropic import _wire as w
from interlock.adapters.providers.anthropic._stream import AnthropicStreamDecoder, error_kind, final_events
from interlock.policies._reasoning import ANTHROPIC_MIN_BUDGET, budget_of

__all__ = ["AnthropicCodec"]

_ANY_JSON = msgspec.json.Decoder()


@final
class AnthropicCodec:
    """Codec for the Anthropic Messages API; the base URL has no ``/v1`` (paths carry it)."""

    def __init__(
        self,
        provider: str,
        api_key: Secret | None,
        *,
        version: str = "2023-06-01",
        default_max_tokens: int = 4096,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self._api_key = api_key
        self._version = version
        self._default_max_tokens = default_max_tokens
        self._extra_headers = dict(extra_headers or {})

    def __repr__(self) -> str:
        return f"AnthropicCodec({self.provider!r}, version={self._version!r})"

    def _headers(self, *, body: bool) -> dict[str, str]:
        headers = {"anthropic-version": self._version}
        if body:
            headers["content-type"] = "application/json"
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.reveal()
        return headers | self._extra_headers

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        """Build ``POST /v1/messages``; raises ``RequestError`` for what Anthropic cannot take."""
        tools = _tools(request)
        max_tokens = request.max_tokens or self._default_max_tokens
        body = w.MessagesRequest(
            model=model_id,
            max_tokens=max_tokens,
            messages=_turns(request.messages),
            system=_system(request),
            temperature=request.temperature,
            top_p=request.top_p,
            stop_sequences=request.stop or None,
            tools=tools,
            tool_choice=_tool_choice(request, tools),
            output_config=self._output_config(request),
            thinking=self._thinking(request, max_tokens),
            stream=True if stream else None,
        )
        return WireRequest("POST", "/v1/messages", self._headers(body=True), w.REQUEST_ENCODER.encode(body))

    def _thinking(self, request: ChatRequest, max_tokens: int) -> w.ThinkingConfig | None:
        """Extended thinking for ``request.reasoning``: a budget of at least 1024, below ``max_tokens``."""
        if request.reasoning is None:
            return None
        if max_tokens <= ANTHROPIC_MIN_BUDGET:
            problem = f"{self.provider}: thinking needs max_tokens above {ANTHROPIC_MIN_BUDGET}, got {max_tokens}"
            raise RequestError("max_tokens", problem)
        return w.ThinkingConfig(max(ANTHROPIC_MIN_BUDGET, budget_of(request.reasoning, max_tokens)))

    def _output_config(self, request: ChatRequest) -> w.OutputConfig | None:
        fmt = request.response_format
        if isinstance(fmt, JsonSchemaFormat):
            return w.OutputConfig(format=w.JsonSchemaOutput(schema=fmt.schema))
        if isinstance(fmt, JsonObjectFormat):
            raise RequestError(
                "response_format",
                f"{self.provider}: json_object has no Anthropic equivalent; give a json_schema instead",
            )
        return None

    def stream_decoder(self, model_id: str) -> AnthropicStreamDecoder:
        """A fresh decoder for one streamed response."""
        return AnthropicStreamDecoder(self.provider, model_id, self._api_key)

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        """A Message object as the events its stream would have given (one delta per block)."""
        try:
            message = w.RESPONSE_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            detail = f"{self.provider}: malformed JSON response body"
            raise ProviderError(ErrorClass.SERVER_ERROR, self.provider, model=model_id, detail=detail) from exc
        events: list[StreamEvent] = []
        for index, block in enumerate(message.content):
            events += _block_events(index, block)
        return events + final_events(message.usage, message.stop_reason, served_model=message.model)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        """Map an HTTP failure to a typed error; the detail never holds the API key."""
        try:
            err = w.ERROR_DECODER.decode(body).error
        except msgspec.DecodeError:
            err = w.WireErrorBody()
        detail = f"{err.type}: {err.message}" if err.type else body[:200].decode("utf-8", errors="replace")
        kind = error_kind(err.type, err.message, status, err.error_code)
        return ProviderError(
            kind,
            self.provider,
            model=model_id,
            status=status,
            # a retry hint means nothing when the account is out of credit: no retry soon helps
            retry_after=None if kind is ErrorClass.QUOTA else parse_retry_after(headers),
            detail=self._scrub(detail),
        )

    def _scrub(self, text: str) -> str:
        if self._api_key is not None and self._api_key.reveal():
            return text.replace(self._api_key.reveal(), "****")
        return text

    def probe_request(self) -> WireRequest:
        """``GET /v1/models``: authenticated and cheap."""
        return WireRequest("GET", "/v1/models", self._headers(body=False))


# -- request mapping -------------------------------------------------------------------------


def _cached(block: w.ContentBlock) -> w.ContentBlock:
    return msgspec.structs.replace(block, cache_control=w.EPHEMERAL)


def _system(request: ChatRequest) -> tuple[w.TextBlock, ...] | None:
    blocks: list[w.TextBlock] = []
    for message in request.messages:
        if message.role != "system":
            continue
        if any(not isinstance(p, TextPart) for p in message.content):
            raise RequestError("messages", "a system message can hold only text")
        mine = [w.TextBlock(p.text) for p in message.content if isinstance(p, TextPart) and p.text]
        if mine and message.cache_breakpoint:
            mine[-1] = w.TextBlock(mine[-1].text, w.EPHEMERAL)
        blocks += mine
    if blocks and request.cache_system:
        blocks[-1] = w.TextBlock(blocks[-1].text, w.EPHEMERAL)
    return tuple(blocks) or None


def _turns(messages: tuple[Message, ...]) -> tuple[w.WireMessage, ...]:
    turns: list[w.WireMessage] = []
    for message in messages:
        if message.role == "system":
            continue
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = [_block(part, role) for part in message.content]
        # Anthropic rejects empty text blocks; an empty part carries nothing anyway.
        blocks = [b for b in blocks if not (isinstance(b, w.TextBlock) and not b.text)]
        if not blocks:
            continue
        if message.cache_breakpoint:
            blocks[-1] = _cached(blocks[-1])
        if turns and turns[-1].role == role:
            turns[-1] = w.WireMessage(role, turns[-1].content + tuple(blocks))
        else:
            turns.append(w.WireMessage(role, tuple(blocks)))
    return tuple(turns)


def _block(part: object, role: str) -> w.ContentBlock:
    match part:
        case TextPart(text=text):
            return w.TextBlock(text)
        case ImagePart() if role == "user":
            return w.ImageBlock(_image_source(part))
        case ToolResultPart(tool_call_id=call_id, content=content, is_error=is_error) if role == "user":
            return w.ToolResultBlock(call_id, content, is_error)
        case ToolCallPart(id=call_id, name=name, arguments=arguments) if role == "assistant":
            return w.ToolUseBlock(call_id, name, _tool_input(arguments, name))
    raise RequestError("messages", f"a {role} turn cannot hold a {type(part).__name__} on Anthropic")


def _image_source(part: ImagePart) -> w.Base64Source | w.UrlSource:
    if part.data:
        return w.Base64Source(part.media_type, part.data)
    if part.url and part.url.startswith("data:"):
        # A data URL is inline bytes: send them as a base64 source, not as a URL to fetch.
        head, _, data = part.url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if encoding == "base64" and data:
            return w.Base64Source(media_type or part.media_type, data)
        raise RequestError("messages", "an image data URL must be base64-encoded")
    if part.url:
        return w.UrlSource(part.url)
    raise RequestError("messages", "an image needs a url or base64 data")


def _tool_input(arguments: str, name: str) -> msgspec.Raw:
    if not arguments.strip():
        return msgspec.Raw(b"{}")
    try:
        value: Any = _ANY_JSON.decode(arguments)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise RequestError("messages", f"arguments of tool call {name!r} must be a JSON object")
    return msgspec.Raw(arguments.encode())


def _tools(request: ChatRequest) -> tuple[w.WireTool, ...] | None:
    tools = [w.WireTool(t.name, t.parameters, t.description) for t in request.tools]
    if tools and request.cache_tools:
        tools[-1] = msgspec.structs.replace(tools[-1], cache_control=w.EPHEMERAL)
    return tuple(tools) or None


def _tool_choice(request: ChatRequest, tools: tuple[w.WireTool, ...] | None) -> w.WireToolChoice | None:
    choice = request.tool_choice
    serial = True if request.parallel_tool_calls is False else None
    if isinstance(choice, ToolChoiceMode) and choice.mode == "none":
        return w.WireToolChoice("none") if tools else None
    if tools is None:
        if choice is not None:
            raise RequestError("tool_choice", "a tool choice needs tools")
        return None
    if isinstance(choice, ToolChoiceNamed):
        if choice.name not in {t.name for t in tools}:
            raise RequestError("tool_choice", f"no tool named {choice.name!r}")
        return w.WireToolChoice("tool", choice.name, serial)
    if isinstance(choice, ToolChoiceMode) and choice.mode == "required":
        return w.WireToolChoice("any", None, serial)
    if choice is None and serial is None:
        return None
    return w.WireToolChoice("auto", None, serial)


# -- response mapping ------------------------------------------------------------------------


def _block_events(index: int, block: w.WireBlock) -> list[StreamEvent]:
    match block.type:
        case "text":
            return [TextDelta(block.text)] if block.text else []
        case "thinking":
            out: list[StreamEvent] = [ThinkingDelta(text=block.thinking)] if block.thinking else []
            return out + ([ThinkingDelta(signature=block.signature)] if block.signature else [])
        case "tool_use":
            args = bytes(block.input).decode() or "{}"
            return [ToolCallDelta(index, block.id, block.name, args), ToolCallDone(index, block.id, block.name, args)]
    return []  # redacted thinking, server-tool blocks: nothing canonical to say


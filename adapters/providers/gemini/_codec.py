"""The Google Gemini codec: canonical requests to ``generateContent`` JSON, and errors back.

Paths hang off a base URL without version (``/v1beta/models/{model}:generateContent``,
``...:streamGenerateContent?alt=sse``); the key travels in ``x-goog-api-key``. Decisions,
each pinned by tests/test_codec_gemini.py:

- Roles: user and tool -> ``user``, assistant -> ``model``; adjacent turns of one role merge
  (parallel function responses belong in one turn); system text -> ``systemInstruction``.
  A tool result is a ``functionResponse`` named after the nearest earlier call of its id,
  with ``response`` ``{"output": text}`` or, if ``is_error``, ``{"error": text}``.
- A tool without declared properties is sent without ``parameters``; ``parallel_tool_calls``
  has no Gemini setting.
- A function call's ``thoughtSignature`` travels on ``ToolCallDone.signature`` (and the
  answer's ``ToolCall.signature``) and is sent back on the ``ToolCallPart`` of later turns, as
  Gemini requires for multi-turn function calling with thinking models.

Responses: the stream decoder, the error table, and the usage and finish rules live in
``_stream``; a failed call is classified here, with its retry hint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import msgspec

from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
)
from interlock.adapters.providers._codec import WireRequest
from interlock.adapters.providers._retry_after import parse_retry_after
from interlock.adapters.providers.gemini import _wire as w
from interlock.adapters.providers.gemini._schema import function_declarations, to_gemini_schema
from interlock.adapters.providers.gemini._stream import GeminiStreamDecoder, error_kind
from interlock.policies._reasoning import BUDGETS, budget_of

__all__ = ["GeminiCodec"]

E = ErrorClass
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")
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
        return GeminiStreamDecoder(self.provider, model_id, self._key)

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        """Decode a whole generateContent body into the events a stream would give."""
        try:
            response = w.RESPONSE_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            detail = f"malformed JSON response body ({len(body)} bytes)"
            raise ProviderError(E.SERVER_ERROR, self.provider, model=model_id, detail=detail) from exc
        decoder = GeminiStreamDecoder(self.provider, model_id, self._key)
        return decoder.apply(response) + decoder.finish()

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        """Map a failed call to a typed error; retry hint from headers or RetryInfo, the longer."""
        error = _error_body(body)
        kind = error_kind(status, error)
        hints = [h for h in (parse_retry_after(headers), _retry_delay(error)) if h is not None]
        if kind is E.QUOTA:
            hints = []  # a spent quota's RetryInfo points at the next per-minute window, not at new credit
        detail = error.message if error is not None else body[:200].decode("utf-8", errors="replace")
        if self._key is not None and self._key.reveal():
            detail = detail.replace(self._key.reveal(), "****")
        return ProviderError(
            kind, self.provider, model=model_id, status=status, retry_after=max(hints, default=None), detail=detail
        )

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        return request_headers(self._key, self._extra, json_body=json_body)


def request_headers(key: Secret | None, extra: Mapping[str, str], *, json_body: bool) -> dict[str, str]:
    """A Gemini request's headers: the configured extras, the JSON content type, the key in ``x-goog-api-key``."""
    headers = dict(extra)
    if json_body:
        headers["content-type"] = "application/json"
    if key is not None:
        headers["x-goog-api-key"] = key.reveal()
    return headers


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
        thinking_config=_thinking(request),
    )
    return config if config != w.GGenerationConfig() else None


def _thinking(request: ChatRequest) -> w.GThinkingConfig | None:
    """A thinking budget for ``request.reasoning``, its thoughts returned (they stream as thinking)."""
    if request.reasoning is None:
        return None
    budget = budget_of(request.reasoning, request.max_tokens or BUDGETS["high"] + 1)
    return w.GThinkingConfig(budget, include_thoughts=True)

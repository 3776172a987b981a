"""The gateway's request mapping: a decoded OpenAI request -> the canonical ``ChatRequest``.

The body is decoded at the edge by ``REQUEST_DECODER`` (``interlock.adapters.providers.openai._server_wire``);
this module maps what it read, and turns a decoder's complaint into a ``RequestError`` that names
the offending field. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import re

import msgspec

from interlock._errors import RequestError
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    ResponseFormat,
    Sensitivity,
    TextFormat,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
)
from interlock.adapters.providers.openai._server_wire import (
    AssistantMessageIn,
    ChatCompletionRequest,
    MessageIn,
    NamedToolChoiceIn,
    ToolIn,
)
from interlock.adapters.providers.openai._wire import (
    WireContentPart,
    WireDeveloperMessage,
    WireJsonObjectFormat,
    WireJsonSchemaFormat,
    WireSystemMessage,
    WireTextFormat,
    WireTextPart,
    WireToolMessage,
    WireUserMessage,
)

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_SENSITIVITY: dict[str, Sensitivity] = {"public": "public", "internal": "internal", "pii": "pii"}


def sensitivity_of(header: str | None) -> Sensitivity:
    """The request's data sensitivity from ``x-interlock-sensitivity`` (default ``internal``)."""
    if header is None:
        return "internal"
    found = _SENSITIVITY.get(header.strip().lower())
    if found is None:
        raise RequestError("x-interlock-sensitivity", f"expected one of {', '.join(_SENSITIVITY)}, got {header!r}")
    return found


def to_chat_request(
    body: ChatCompletionRequest,
    *,
    tenant: str,
    caller: str,
    metadata: dict[str, str],
    request_id: str,
    sensitivity: Sensitivity = "internal",
) -> ChatRequest:
    """The canonical request for ``body``; ``RequestError`` names the field it cannot carry."""
    tools = tuple(_tool(t) for t in body.tools or ())
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = dict(body.metadata or {})
    if body.user is not None:
        extra["user"] = body.user
    return ChatRequest(
        messages=tuple(_message(i, m) for i, m in enumerate(body.messages)),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        model=body.model,
        tenant=tenant,
        caller=caller,
        sensitivity=sensitivity,
        metadata={**extra, **metadata},
        request_id=request_id,
    )


def _message(i: int, m: MessageIn) -> Message:
    field = f"messages[{i}]"
    match m:
        case WireSystemMessage(content=content) | WireDeveloperMessage(content=content):
            return Message(role="system", content=_texts(content))
        case WireUserMessage(content=str() as text):
            return Message.text("user", text)
        case WireUserMessage(content=list() as parts):
            user_parts = tuple(_user_part(f"{field}.content[{j}]", p) for j, p in enumerate(parts))
            return Message(role="user", content=user_parts)
        case AssistantMessageIn():
            return _assistant(field, m)
        case WireToolMessage(content=content, tool_call_id=call_id):
            text = "".join(p.text for p in _texts(content) if isinstance(p, TextPart))
            return Message(role="tool", content=(ToolResultPart(call_id, text),))
    raise RequestError(f"{field}.role", "unsupported role")  # pragma: no cover - the decoder admits no other


def _texts(content: str | list[WireTextPart]) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    return tuple(TextPart(p.text) for p in content)


def _user_part(field: str, part: WireContentPart) -> Part:
    if isinstance(part, WireTextPart):
        return TextPart(part.text)
    url = part.image_url.url
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None:
            raise RequestError(f"{field}.image_url.url", "a data URL must be data:<media type>;base64,<data>")
        return ImagePart(data=match["data"], media_type=match["media"])
    return ImagePart(url=url)


def _assistant(field: str, m: AssistantMessageIn) -> Message:
    if isinstance(m.content, str):
        texts = [m.content]
    else:
        texts = [p.text if isinstance(p, WireTextPart) else p.refusal for p in m.content or ()]
    calls: list[Part] = [ToolCallPart(c.id, c.function.name, c.function.arguments) for c in m.tool_calls]
    if not texts and not calls:
        raise RequestError(f"{field}.content", "an assistant message needs content or tool_calls")
    texts = [t for t in texts if t or not calls]  # an empty content beside tool calls says nothing
    return Message(role="assistant", content=(*(TextPart(t) for t in texts), *calls))


def _tool(tool: ToolIn) -> ToolSpec:
    fn = tool.function
    if fn.parameters is None:
        return ToolSpec(fn.name, fn.description)
    return ToolSpec(fn.name, fn.description, fn.parameters)


def _tool_choice(choice: str | NamedToolChoiceIn | None, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, NamedToolChoiceIn):
        if choice.function.name not in {t.name for t in tools}:
            raise RequestError("tool_choice", f"names tool {choice.function.name!r}, which is not in tools")
        return ToolChoiceNamed(choice.function.name)
    if choice == "required" and not tools:
        raise RequestError("tool_choice", "'required' needs at least one tool")
    return ToolChoiceMode("none" if choice == "none" else "required" if choice == "required" else "auto")


def _response_format(fmt: WireTextFormat | WireJsonObjectFormat | WireJsonSchemaFormat | None) -> ResponseFormat | None:
    match fmt:
        case WireJsonSchemaFormat(json_schema=spec):
            return JsonSchemaFormat(spec.name, spec.schema or {}, strict=spec.strict is True)
        case WireJsonObjectFormat():
            return JsonObjectFormat()
        case WireTextFormat():
            return TextFormat()
    return None


def decode_error(exc: msgspec.DecodeError) -> RequestError:
    """A body the decoder rejected, as a ``RequestError`` naming the field (``body`` for bad JSON)."""
    if not isinstance(exc, msgspec.ValidationError):
        return RequestError("body", f"not valid JSON ({exc})")
    match = _AT_PATH.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["msg"], (match["path"] or "").lstrip(".")
    missing = _MISSING.match(message)
    if missing:
        path = f"{path}.{missing['field']}" if path else missing["field"]
    return RequestError(path or "body", message[:1].lower() + message[1:])

"""The gateway's request mapping: a decoded OpenAI request -> the canonical ``ChatRequest``.

The body is decoded at the edge by ``REQUEST_DECODER`` (``interlock.adapters.providers.openai._server_wire``);
this module maps what it read, and turns a decoder's complaint into a ``RequestError`` that names
the offending field: a value of the wrong shape, a body too deeply nested to decode (named by the
path where it gets too deep), a token limit no model of the fleet could honour, a tool schema that
cannot be checked (``check_tool_schemas``, named on the wire as ``tools[i].function.parameters``).

An OpenAI option the canonical request cannot carry (``logprobs``, ``n`` above 1, penalties...)
is refused by name when it is set to anything but its neutral value (``unsupported_parameter``):
an answer without it would be silently other than what was asked. docs/errors.md lists them, and
the few members that are read and dropped on purpose.
Nothing here does I/O or reads a clock; a first-seen tool schema is checked in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import anyio.to_thread
import msgspec

from interlock._errors import RequestError
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    Reasoning,
    ReasoningEffort,
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
from interlock.policies._tool_validate import check_tool_schemas

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_SENSITIVITY: dict[str, Sensitivity] = {"public": "public", "internal": "internal", "pii": "pii"}
# JSON's structure tokens and whole strings (so brackets inside strings are skipped); nothing else matters
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_TOOL_FIELD = re.compile(r"^tools\[(?P<i>\d+)\]\.parameters$")
MAX_BODY_DEPTH = 256  # named in the error for a body the decoder could not descend
_PATH_KEYS = 3  # the deep path is named down to its third key: ``tools[0].function.parameters``

# Each option, and when it is set: to anything but the value that asks for nothing.
_UNSUPPORTED: tuple[tuple[str, Callable[[ChatCompletionRequest], bool]], ...] = (
    ("n", lambda b: (b.n or 1) > 1),
    ("logprobs", lambda b: b.logprobs is True),
    ("top_logprobs", lambda b: bool(b.top_logprobs)),
    ("frequency_penalty", lambda b: bool(b.frequency_penalty)),
    ("presence_penalty", lambda b: bool(b.presence_penalty)),
    ("logit_bias", lambda b: bool(b.logit_bias)),
    ("modalities", lambda b: b.modalities is not None and b.modalities != ["text"]),
    ("audio", lambda b: b.audio is not None),
    ("prediction", lambda b: b.prediction is not None),
    ("functions", lambda b: bool(b.functions)),
    ("function_call", lambda b: b.function_call is not None),
    ("web_search_options", lambda b: b.web_search_options is not None),
    ("verbosity", lambda b: b.verbosity is not None),
    ("service_tier", lambda b: b.service_tier not in (None, "auto", "default")),
    ("store", lambda b: b.store is True),
)
UNSUPPORTED_PARAMETERS = tuple(name for name, _ in _UNSUPPORTED)


def unsupported_parameter(body: ChatCompletionRequest) -> str | None:
    """The first option of ``body`` that asks for what interlock cannot give, or None."""
    return next((name for name, is_set in _UNSUPPORTED if is_set(body)), None)


_EFFORTS: tuple[ReasoningEffort, ...] = ("minimal", "low", "medium", "high")


def reasoning_of(effort: object, field: str) -> Reasoning | None:
    """The reasoning an effort level asks for (OpenAI's ``reasoning_effort``, Responses' ``reasoning.effort``).

    ``none`` (or nothing) asks for none; anything but the four levels is a ``RequestError`` naming ``field``.
    """
    if effort is None or effort == "none":
        return None
    for level in _EFFORTS:
        if effort == level:
            return Reasoning(effort=level)
    raise RequestError(field, f"expected one of none, {', '.join(_EFFORTS)}; got {effort!r}")


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
    max_tokens_ceiling: int | None = None,
) -> ChatRequest:
    """The canonical request for ``body``; ``RequestError`` names the field it cannot carry.

    ``max_tokens_ceiling`` is the most output any model could give (the fleet's largest context
    window): a larger ``max_tokens`` or ``max_completion_tokens`` can never be served.
    """
    tools = tuple(_tool(t) for t in body.tools or ())
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = dict(body.metadata or {})
    if body.user is not None:
        extra["user"] = body.user
    if body.safety_identifier is not None:
        extra["safety_identifier"] = body.safety_identifier
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
        max_tokens=_max_tokens(body, max_tokens_ceiling),
        reasoning=reasoning_of(body.reasoning_effort, "reasoning_effort"),
        model=body.model,
        tenant=tenant,
        caller=caller,
        sensitivity=sensitivity,
        metadata={**extra, **metadata},
        request_id=request_id,
    )


def _max_tokens(body: ChatCompletionRequest, ceiling: int | None) -> int | None:
    field, value = "max_completion_tokens", body.max_completion_tokens
    if not value:
        field, value = "max_tokens", body.max_tokens
    if value is not None and ceiling is not None and value > ceiling:
        raise RequestError(field, f"{value} is more than any model here can produce (at most {ceiling} tokens)")
    return value


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
    if not any(texts) and m.refusal:  # an earlier refusal, sent back as OpenAI wrote it: content null
        texts = [m.refusal]
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


def too_deep(body: bytes) -> RequestError:
    """A body the decoder could not descend (it nests past the stack), naming where it gets too deep."""
    return RequestError(_deep_path(body) or "body", f"nested deeper than {MAX_BODY_DEPTH} levels")


def _deep_path(body: bytes) -> str:
    """The path to the first container nested deeper than ``MAX_BODY_DEPTH``, down to ``_PATH_KEYS`` keys."""
    path: list[str | int | None] = []  # per open container: the key or index being read in it
    expect_key = False
    for match in _JSON_TOKEN.finditer(body):
        token = match[0]
        if token in (b"{", b"["):
            if len(path) == MAX_BODY_DEPTH:
                return _render(path)
            path.append(None if token == b"{" else 0)
            expect_key = token == b"{"
        elif token in (b"}", b"]"):
            if path:
                path.pop()
            expect_key = False
        elif token == b",":
            if path and isinstance(path[-1], int):
                path[-1] += 1
            expect_key = bool(path) and not isinstance(path[-1], int)
        elif expect_key:  # a string where an object expects its next key
            path[-1] = token[1:-1].decode("utf-8", "replace")
            expect_key = False
    return ""


def _render(path: list[str | int | None]) -> str:
    out, keys = "", 0
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif segment is not None:
            keys += 1
            if keys > _PATH_KEYS:
                break
            out += f".{segment}" if out else segment
    return out


async def check_tools(chat: ChatRequest, field: str = "tools[{i}].function.parameters") -> None:
    """``check_tool_schemas`` of the request's tools, its error naming the field as on the wire.

    ``field`` is where a dialect's wire holds tool ``{i}``'s schema (OpenAI chat's by default).
    """
    if not chat.tools:
        return
    try:
        # A schema seen for the first time costs jsonschema milliseconds: a worker thread pays them.
        await anyio.to_thread.run_sync(check_tool_schemas, chat.tools)
    except RequestError as exc:
        match = _TOOL_FIELD.match(exc.field)
        if match is None:
            raise
        raise RequestError(field.format(i=match["i"]), exc.problem) from None

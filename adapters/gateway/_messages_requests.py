"""The Anthropic Messages dialect's requests: the wire, checked, to the canonical ``ChatRequest``.

Every field the canonical request cannot carry is a ``RequestError`` naming its path; see
``_messages`` for what is carried and what is refused.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from interlock._errors import RequestError
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Part,
    Reasoning,
    Sensitivity,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
)
from interlock.adapters.gateway import _messages_wire as w
from interlock.adapters.gateway._requests import decode_error, too_deep

_T = TypeVar("_T")



def decode_body(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    except RecursionError:  # msgspec descends containers on the C stack: a deep body runs out of it
        raise too_deep(body) from None


def to_chat_request(
    body: w.MessagesIn,
    *,
    tenant: str,
    caller: str,
    metadata: dict[str, str],
    request_id: str,
    sensitivity: Sensitivity = "internal",
    max_tokens_ceiling: int | None = None,
) -> ChatRequest:
    """The canonical request for a Messages ``body``; ``RequestError`` names the field it cannot carry."""
    if max_tokens_ceiling is not None and body.max_tokens > max_tokens_ceiling:
        problem = f"{body.max_tokens} is more than any model here can produce (at most {max_tokens_ceiling} tokens)"
        raise RequestError("max_tokens", problem)
    extra = {"user": body.metadata.user_id} if body.metadata is not None and body.metadata.user_id else {}
    return msgspec.structs.replace(
        prompt_request(body),
        stop=tuple(body.stop_sequences or ()),
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_tokens,
        reasoning=_reasoning(body.thinking),
        tenant=tenant,
        caller=caller,
        sensitivity=sensitivity,
        metadata={**extra, **metadata},
        request_id=request_id,
    )


def _reasoning(thinking: w.ThinkingConfigIn | None) -> Reasoning | None:
    """Extended thinking asked for: its ``budget_tokens`` (required when enabled, as Anthropic says)."""
    if thinking is None or thinking.type != "enabled":
        return None
    if thinking.budget_tokens is None or thinking.budget_tokens < 1:
        raise RequestError("thinking.budget_tokens", "enabled thinking needs a budget_tokens of at least 1")
    return Reasoning(budget_tokens=thinking.budget_tokens)


def prompt_request(body: w.CountTokensIn) -> ChatRequest:
    """The canonical request for the prompt part of ``body``: system, messages, tools, format, caching."""
    system, cache_system = _system(body.system)
    mapped = (_message(i, m) for i, m in enumerate(body.messages))
    messages = [m for m in mapped if m is not None]
    if body.cache_control is not None and messages:  # automatic caching: the breakpoint goes last
        messages[-1] = msgspec.structs.replace(messages[-1], cache_breakpoint=True)
    tools = tuple(_tool(i, t) for i, t in enumerate(body.tools or ()))
    choice = body.tool_choice
    fmt = body.output_config.format if body.output_config is not None else None
    return ChatRequest(
        messages=(*system, *messages),
        tools=tools,
        tool_choice=_tool_choice(choice, tools),
        parallel_tool_calls=False if choice is not None and choice.disable_parallel_tool_use else None,
        response_format=JsonSchemaFormat("output", fmt.schema) if fmt is not None else None,
        model=body.model,
        cache_system=cache_system,
        cache_tools=any(t.cache_control is not None for t in body.tools or ()),
    )


def _system(system: str | list[w.TextIn] | None) -> tuple[tuple[Message, ...], bool]:
    if not system:
        return (), False
    if isinstance(system, str):
        return (Message.text("system", system),), False
    cached = any(block.cache_control is not None for block in system)
    return (Message(role="system", content=tuple(TextPart(b.text) for b in system)),), cached


def _message(i: int, m: w.MessageIn) -> Message | None:
    field = f"messages[{i}]"
    if isinstance(m.content, str):
        return Message.text(m.role, m.content)
    if not m.content:
        raise RequestError(f"{field}.content", "a message needs at least one content block")
    parts = [p for j, b in enumerate(m.content) if (p := _part(f"{field}.content[{j}]", m.role, b)) is not None]
    if not parts:  # only earlier reasoning, which is dropped: the turn says nothing to a provider
        return None
    cached = any(getattr(b, "cache_control", None) is not None for b in m.content)
    return Message(role=m.role, content=tuple(parts), cache_breakpoint=cached)


def _part(field: str, role: str, block: w.BlockIn) -> Part | None:
    match block:
        case w.TextIn(text=text):
            return TextPart(text)
        case w.ImageIn(source=w.Base64SourceIn(media_type=media, data=data)) if role == "user":
            return ImagePart(data=data, media_type=media)
        case w.ImageIn(source=w.UrlSourceIn(url=url)) if role == "user":
            return ImagePart(url=url)
        case w.ToolUseIn(id=call_id, name=name, input=raw) if role == "assistant":
            return ToolCallPart(call_id, name, bytes(raw).decode())
        case w.ToolResultIn() if role == "user":
            return ToolResultPart(block.tool_use_id, _result_text(field, block), block.is_error)
        case w.ThinkingIn() | w.RedactedThinkingIn() if role == "assistant":
            return None
    raise RequestError(f"{field}.type", f"a {role} turn cannot hold a {block.__struct_config__.tag} block")


def _result_text(field: str, block: w.ToolResultIn) -> str:
    if isinstance(block.content, str):
        return block.content
    for k, part in enumerate(block.content):
        if isinstance(part, w.ImageIn):
            raise RequestError(f"{field}.content[{k}]", "interlock carries a tool result as text: no images")
    return "".join(p.text for p in block.content if isinstance(p, w.TextIn))


def _tool(i: int, tool: w.ToolIn) -> ToolSpec:
    if tool.type not in (None, "custom"):
        problem = f"server tool {tool.type!r} is not supported by interlock; only custom tools with an input_schema"
        raise RequestError(f"tools[{i}].type", problem)
    if tool.input_schema is None:
        raise RequestError(f"tools[{i}].input_schema", "a custom tool needs an input_schema")
    return ToolSpec(tool.name, tool.description, tool.input_schema)


def _tool_choice(choice: w.ToolChoiceIn | None, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if choice.type == "tool":
        if choice.name is None:
            raise RequestError("tool_choice.name", "a tool choice of type 'tool' names the tool")
        if choice.name not in {t.name for t in tools}:
            raise RequestError("tool_choice.name", f"names tool {choice.name!r}, which is not in tools")
        return ToolChoiceNamed(choice.name)
    if choice.type == "any" and not tools:
        raise RequestError("tool_choice", "'any' needs at least one tool")
    return ToolChoiceMode("required" if choice.type == "any" else "none" if choice.type == "none" else "auto")


# -- answers ------------------------------------------------------------------------------------

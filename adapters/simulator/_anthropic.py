"""Simulator, Anthropic Messages wire: request view in, ``Message`` or its event stream out.

Facts from Anthropic's API reference: a stream is named SSE events, ``message_start`` (the message
with empty content and the input usage), per block ``content_block_start`` / ``_delta`` /
``_stop`` (``text_delta`` or ``input_json_delta`` fragments of a ``tool_use`` input), ``ping``s,
then ``message_delta`` (stop reason, cumulative usage) and ``message_stop``. Cache reads are
reported in ``cache_read_input_tokens``, outside ``input_tokens``. A refusal is
``stop_reason: "refusal"`` after the text streamed so far; an error mid-stream is an ``error``
event (``{"type": "error", "error": {...}}``) in place of the rest of the stream.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.simulator._wire import (
    SENTINEL,
    Ask,
    Reply,
    StreamParts,
    StreamTemplate,
    ToolSpec,
    chars_of,
    reply_text,
    split_args,
    sse,
    text_of,
)

_enc = msgspec.json.Encoder()
_EMPTY = msgspec.Raw(b"{}")


class _ABlock(msgspec.Struct, frozen=True):
    type: str = "text"
    text: str = ""


class _AMessage(msgspec.Struct, frozen=True):
    role: str = "user"
    content: str | list[_ABlock] = ""


class _ATool(msgspec.Struct, frozen=True):
    name: str
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str = ""


class _AFormat(msgspec.Struct, frozen=True):
    type: str = ""
    schema: dict[str, Any] | None = None


class _AOutputConfig(msgspec.Struct, frozen=True):
    format: _AFormat | None = None


class _AToolChoice(msgspec.Struct, frozen=True):
    type: str = "auto"
    name: str | None = None


class _ARequest(msgspec.Struct, frozen=True):
    model: str
    messages: list[_AMessage] = []
    system: str | list[_ABlock] | None = None
    stream: bool = False
    tools: list[_ATool] = []
    tool_choice: _AToolChoice | None = None
    max_tokens: int | None = None
    output_config: _AOutputConfig | None = None
    output_format: _AFormat | None = None  # the structured-outputs beta's name for output_config.format


_A_REQUEST = msgspec.json.Decoder(_ARequest)


class ATextBlock(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    """A text content block."""

    text: str


class AToolUse(msgspec.Struct, frozen=True, tag="tool_use", tag_field="type"):
    """A tool-use content block; ``input`` is the arguments object (raw JSON)."""

    id: str
    name: str
    input: msgspec.Raw


class AUsage(msgspec.Struct, frozen=True):
    """Token usage; cache reads are outside ``input_tokens``."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class AMessage(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="type"):
    """A ``Message`` object."""

    id: str
    role: str = "assistant"
    model: str
    content: list[ATextBlock | AToolUse]
    stop_reason: str | None
    stop_sequence: None = None
    usage: AUsage | UnsetType = UNSET


class AMessageStart(msgspec.Struct, frozen=True, tag="message_start", tag_field="type"):
    """``message_start`` event."""

    message: AMessage


class ABlockStart(msgspec.Struct, frozen=True, tag="content_block_start", tag_field="type"):
    """``content_block_start`` event."""

    index: int
    content_block: ATextBlock | AToolUse


class ATextDelta(msgspec.Struct, frozen=True, tag="text_delta", tag_field="type"):
    """A text fragment."""

    text: str


class AJsonDelta(msgspec.Struct, frozen=True, tag="input_json_delta", tag_field="type"):
    """A fragment of a tool-use input's JSON."""

    partial_json: str


class ABlockDelta(msgspec.Struct, frozen=True, tag="content_block_delta", tag_field="type"):
    """``content_block_delta`` event."""

    index: int
    delta: ATextDelta | AJsonDelta


class ABlockStop(msgspec.Struct, frozen=True, tag="content_block_stop", tag_field="type"):
    """``content_block_stop`` event."""

    index: int


class AStop(msgspec.Struct, frozen=True):
    """``delta`` of ``message_delta``."""

    stop_reason: str
    stop_sequence: None = None


class AMessageDelta(msgspec.Struct, frozen=True, tag="message_delta", tag_field="type"):
    """``message_delta`` event: stop reason and cumulative usage."""

    delta: AStop
    usage: AUsage | UnsetType = UNSET


class AMessageStop(msgspec.Struct, frozen=True, tag="message_stop", tag_field="type"):
    """``message_stop`` event."""


class APing(msgspec.Struct, frozen=True, tag="ping", tag_field="type"):
    """``ping`` event."""


class AErrorBody(msgspec.Struct, frozen=True):
    """``error`` of an Anthropic error body."""

    type: str
    message: str


class AError(msgspec.Struct, frozen=True, tag="error", tag_field="type"):
    """An Anthropic error body."""

    error: AErrorBody


_A_ERRORS = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",  # what the Messages API says when it sheds load
    529: "overloaded_error",
}


def _event(obj: msgspec.Struct) -> bytes:
    return sse(_enc.encode(obj), str(type(obj).__struct_config__.tag))


def _usage(r: Reply, output: int) -> AUsage | UnsetType:
    if not r.reports_usage:
        return UNSET
    return AUsage(r.input_tokens - r.cached_tokens, output, cache_read_input_tokens=r.cached_tokens)


def _stop_reason(r: Reply) -> str:
    if r.refusal:
        return "refusal"
    return "tool_use" if r.calls else "max_tokens" if r.truncated else "end_turn"


def _is_tool_result(message: _AMessage) -> bool:
    return isinstance(message.content, list) and any(b.type == "tool_result" for b in message.content)


def _user_turn(messages: list[_AMessage]) -> str:
    """The text of the last user message that is not only tool results."""
    for m in reversed(messages):
        if m.role == "user" and (text := text_of(m.content).strip()):
            return text
    return ""


def _output(req: _ARequest) -> tuple[str, dict[str, Any] | None]:
    fmt = (req.output_config.format if req.output_config else None) or req.output_format
    if fmt is not None and fmt.type == "json_schema":
        return "json_schema", fmt.schema
    return "text", None


def _tool_choice(choice: _AToolChoice | None) -> tuple[str, str | None]:
    if choice is None or choice.type == "auto":
        return "auto", None
    if choice.type == "none":
        return "none", None
    return "required", choice.name if choice.type == "tool" else None


class AnthropicWire:
    """Anthropic Messages, server side."""

    name = "anthropic"

    def decode(self, body: bytes, model: str = "", stream: bool = False) -> Ask:
        """An ``Ask`` from a ``POST /v1/messages`` body."""
        req = _A_REQUEST.decode(body)
        tools = tuple(ToolSpec(t.name, t.input_schema, t.description) for t in req.tools)
        mode, forced = _tool_choice(req.tool_choice)
        chars = chars_of(req.system) + sum(chars_of(m.content) for m in req.messages)
        after = bool(req.messages) and _is_tool_result(req.messages[-1])
        output, schema = _output(req)
        return Ask(req.model, req.stream, True, chars, tools, mode, forced, req.max_tokens, after,
                   _user_turn(req.messages), output, schema)

    def body(self, r: Reply) -> bytes:
        """A non-stream ``Message``."""
        blocks: list[ATextBlock | AToolUse] = [AToolUse(c.id, c.name, msgspec.Raw(c.arguments)) for c in r.calls]
        if not blocks and (r.words or r.pieces or not r.refusal):  # a refusal before any word has no content
            blocks = [ATextBlock(reply_text(r))]
        content = blocks
        usage = _usage(r, r.output_tokens)
        return _enc.encode(AMessage(id=r.id, model=r.model, content=content, stop_reason=_stop_reason(r), usage=usage))

    def stream(self, r: Reply, include_usage: bool) -> StreamParts:
        """Events of a streamed message (usage is always reported)."""
        start = AMessage(id=r.id, model=r.model, content=[], stop_reason=None, usage=_usage(r, 1))
        head = _event(AMessageStart(start))
        if not r.calls:
            head += _event(ABlockStart(0, ATextBlock("")))
        head += _event(APing())
        calls = []
        for k, c in enumerate(r.calls):
            frames = _event(ABlockStart(k, AToolUse(c.id, c.name, _EMPTY)))
            frames += b"".join(_event(ABlockDelta(k, AJsonDelta(p))) for p in split_args(c.arguments))
            calls.append(frames + _event(ABlockStop(k)))
        template = StreamTemplate(_event(ABlockDelta(0, ATextDelta(SENTINEL))))
        if r.error_status:
            # message_start carried the usage; the error event ends the stream in place of the rest.
            error = sse(self.error(r.error_status, "simulated error after usage"), "error")
            return StreamParts(head, template, (), error)
        tail = b"" if r.calls else _event(ABlockStop(0))
        tail += _event(AMessageDelta(AStop(_stop_reason(r)), _usage(r, r.output_tokens))) + _event(AMessageStop())
        return StreamParts(head, template, tuple(calls), tail)

    def error(self, status: int, message: str) -> bytes:
        """An Anthropic error body for ``status``."""
        return _enc.encode(AError(AErrorBody(_A_ERRORS.get(status, "api_error"), message)))


ANTHROPIC = AnthropicWire()

"""Simulator, OpenAI chat completions wire: request view in, ``chat.completion`` (chunks) out.

Facts from OpenAI's API reference: a stream is ``data:`` frames of ``chat.completion.chunk`` ending
with ``data: [DONE]``; the first delta carries the role; tool calls stream as fragments keyed by
``index`` (only the first has ``id`` and ``type``); with ``stream_options.include_usage`` every
chunk has ``usage: null`` and a last chunk with no choices carries the usage, whose
``prompt_tokens_details.cached_tokens`` is counted within ``prompt_tokens``.
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
    split_args,
    sse,
    words_text,
)

_enc = msgspec.json.Encoder()


class _OAPart(msgspec.Struct, frozen=True):
    text: str = ""


class _OAMessage(msgspec.Struct, frozen=True):
    content: str | list[_OAPart] | None = None


class _OAFunction(msgspec.Struct, frozen=True):
    name: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class _OATool(msgspec.Struct, frozen=True):
    function: _OAFunction | None = None


class _OANamed(msgspec.Struct, frozen=True):
    name: str


class _OAToolChoice(msgspec.Struct, frozen=True):
    function: _OANamed | None = None


class _OAStreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class _OARequest(msgspec.Struct, frozen=True):
    model: str
    messages: list[_OAMessage] = []
    stream: bool = False
    stream_options: _OAStreamOptions | None = None
    tools: list[_OATool] = []
    tool_choice: str | _OAToolChoice | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


_OA_REQUEST = msgspec.json.Decoder(_OARequest)


class OAFunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    """``function`` of a tool call (whole or a streamed fragment)."""

    name: str | UnsetType = UNSET
    arguments: str


class OAToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call; in a stream ``index`` orders fragments and only the first has id and type."""

    index: int | UnsetType = UNSET
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: OAFunctionCall


class OADelta(msgspec.Struct, frozen=True):
    """A chunk's delta; unset fields are left out of the JSON."""

    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[OAToolCall] | UnsetType = UNSET


class OAChunkChoice(msgspec.Struct, frozen=True, kw_only=True):
    """A choice of a streamed chunk."""

    index: int = 0
    delta: OADelta
    logprobs: None = None
    finish_reason: str | None = None


class OAPromptDetails(msgspec.Struct, frozen=True):
    """Cached prompt tokens, counted within ``prompt_tokens``."""

    cached_tokens: int = 0


class OAUsage(msgspec.Struct, frozen=True):
    """Token usage."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: OAPromptDetails


class OAChunk(msgspec.Struct, frozen=True, kw_only=True):
    """A ``chat.completion.chunk``."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str = "fp_sim"
    choices: list[OAChunkChoice]
    usage: OAUsage | UnsetType | None = UNSET


class OAMessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant message of a completion."""

    role: str = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[OAToolCall] | UnsetType = UNSET


class OAChoice(msgspec.Struct, frozen=True, kw_only=True):
    """A completion choice."""

    index: int = 0
    message: OAMessageOut
    logprobs: None = None
    finish_reason: str


class OACompletion(msgspec.Struct, frozen=True, kw_only=True):
    """A ``chat.completion``."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    system_fingerprint: str = "fp_sim"
    choices: list[OAChoice]
    usage: OAUsage


class OAErrorBody(msgspec.Struct, frozen=True):
    """``error`` of an OpenAI error body."""

    message: str
    type: str
    code: str | None = None
    param: None = None


class OAError(msgspec.Struct, frozen=True):
    """An OpenAI error body."""

    error: OAErrorBody


_OA_ERRORS = {400: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
              503: ("server_error", "service_unavailable")}


def _oa_usage(r: Reply) -> OAUsage:
    return OAUsage(r.input_tokens, r.output_tokens, r.input_tokens + r.output_tokens, OAPromptDetails(r.cached_tokens))


def _oa_finish(r: Reply) -> str:
    return "tool_calls" if r.calls else "length" if r.truncated else "stop"


class OpenAIWire:
    """OpenAI chat completions, server side."""

    name = "openai"

    def decode(self, body: bytes, model: str = "", stream: bool = False) -> Ask:
        """An ``Ask`` from a ``POST /v1/chat/completions`` body."""
        req = _OA_REQUEST.decode(body)
        tools = tuple(ToolSpec(t.function.name, t.function.parameters) for t in req.tools if t.function)
        choice, mode, forced = req.tool_choice, "auto", None
        if isinstance(choice, _OAToolChoice) and choice.function is not None:
            mode, forced = "required", choice.function.name
        elif choice in ("none", "required"):
            mode = str(choice)
        include = req.stream_options is not None and req.stream_options.include_usage
        chars = sum(chars_of(m.content) for m in req.messages)
        limit = req.max_completion_tokens or req.max_tokens
        return Ask(req.model, req.stream, include, chars, tools, mode, forced, limit)

    def body(self, r: Reply) -> bytes:
        """A non-stream ``chat.completion``."""
        calls = [
            OAToolCall(id=c.id, type="function", function=OAFunctionCall(name=c.name, arguments=c.arguments.decode()))
            for c in r.calls
        ]
        message = OAMessageOut(content=None, tool_calls=calls) if calls else OAMessageOut(content=words_text(r.words))
        choice = OAChoice(message=message, finish_reason=_oa_finish(r))
        completion = OACompletion(id=r.id, created=r.created, model=r.model, choices=[choice], usage=_oa_usage(r))
        return _enc.encode(completion)

    def stream(self, r: Reply, include_usage: bool) -> StreamParts:
        """Chunks of a streamed completion, ending with ``data: [DONE]``."""
        usage: OAUsage | UnsetType | None = None if include_usage else UNSET

        def chunk(delta: OADelta, finish: str | None = None) -> bytes:
            choices = [OAChunkChoice(delta=delta, finish_reason=finish)]
            return sse(_enc.encode(OAChunk(id=r.id, created=r.created, model=r.model, choices=choices, usage=usage)))

        head = chunk(OADelta(role="assistant", content=None if r.calls else ""))
        calls: list[bytes] = []
        for k, c in enumerate(r.calls):
            first, second = split_args(c.arguments)
            opening = OAToolCall(index=k, id=c.id, type="function", function=OAFunctionCall(name=c.name, arguments=""))
            calls.append(chunk(OADelta(tool_calls=[opening])))
            calls += [
                chunk(OADelta(tool_calls=[OAToolCall(index=k, function=OAFunctionCall(arguments=part))]))
                for part in (first, second)
            ]
        tail = chunk(OADelta(), _oa_finish(r))
        if include_usage:
            last = OAChunk(id=r.id, created=r.created, model=r.model, choices=[], usage=_oa_usage(r))
            tail += sse(_enc.encode(last))
        template = StreamTemplate(chunk(OADelta(content=SENTINEL)))
        return StreamParts(head, template, tuple(calls), tail + b"data: [DONE]\n\n")

    def error(self, status: int, message: str) -> bytes:
        """An OpenAI error body for ``status``."""
        kind, code = _OA_ERRORS.get(status, ("server_error", None))
        return _enc.encode(OAError(OAErrorBody(message, kind, code)))


OPENAI = OpenAIWire()

"""Simulator, OpenAI chat completions wire: request view in, ``chat.completion`` (chunks) out.

Facts from OpenAI's API reference: a stream is ``data:`` frames of ``chat.completion.chunk`` ending
with ``data: [DONE]``; the first delta carries the role; tool calls stream as fragments keyed by
``index`` (only the first has ``id`` and ``type``); with ``stream_options.include_usage`` every
chunk has ``usage: null`` and a last chunk with no choices carries the usage, whose
``prompt_tokens_details.cached_tokens`` is counted within ``prompt_tokens``. A refusal is
``delta.refusal`` fragments (``message.refusal`` in a body) with finish ``stop``; an error in a
stream is a ``data: {"error": {...}}`` frame that ends it without ``[DONE]``.

The shapes are OpenAI's wire as modelled once for our servers, in
``interlock.adapters.providers.openai._server_wire``: the lenient request view in, the answers out.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.providers.openai._server_wire import (
    ENCODER,
    REQUEST_VIEW_DECODER,
    ChatCompletionChunkOut,
    ChatCompletionOut,
    ChoiceOut,
    ChunkChoiceOut,
    DeltaOut,
    ErrorBody,
    ErrorOut,
    FunctionCallOut,
    MessageOut,
    PartView,
    PromptDetailsOut,
    ToolCallOut,
    ToolChoiceView,
    UsageOut,
)
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

# The conversation as the simulator reads it, beside the shared request view: who spoke last,
# what the user asked, what each tool is for and the answer's format.


class _Turn(msgspec.Struct, frozen=True):
    role: str = "user"
    content: str | list[PartView] | None = None


class _About(msgspec.Struct, frozen=True):
    name: str = ""
    description: str | None = None


class _ToolAbout(msgspec.Struct, frozen=True):
    function: _About | None = None


class _Schema(msgspec.Struct, frozen=True):
    schema: dict[str, Any] | None = None


class _Format(msgspec.Struct, frozen=True):
    type: str = "text"
    json_schema: _Schema | None = None


class _Conversation(msgspec.Struct, frozen=True):
    messages: list[_Turn] = []
    tools: list[_ToolAbout] = []
    response_format: _Format | None = None


_CONVERSATION = msgspec.json.Decoder(_Conversation)
_FINGERPRINT = "fp_sim"
_OA_ERRORS = {400: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
              503: ("server_error", "service_unavailable"), 529: ("server_error", "service_unavailable")}


def _oa_usage(r: Reply) -> UsageOut | None:
    if not r.reports_usage:
        return None
    details = PromptDetailsOut(r.cached_tokens)
    return UsageOut(r.input_tokens, r.output_tokens, r.input_tokens + r.output_tokens, details)


def _oa_finish(r: Reply) -> str:
    return "tool_calls" if r.calls else "length" if r.truncated else "stop"


class OpenAIWire:
    """OpenAI chat completions, server side."""

    name = "openai"

    def decode(self, body: bytes, model: str = "", stream: bool = False) -> Ask:
        """An ``Ask`` from a ``POST /v1/chat/completions`` body."""
        req, talk = REQUEST_VIEW_DECODER.decode(body), _CONVERSATION.decode(body)
        about = {t.function.name: t.function.description or "" for t in talk.tools if t.function}
        tools = tuple(
            ToolSpec(t.function.name, t.function.parameters, about.get(t.function.name, ""))
            for t in req.tools if t.function
        )
        choice, mode, forced = req.tool_choice, "auto", None
        if isinstance(choice, ToolChoiceView) and choice.function is not None:
            mode, forced = "required", choice.function.name
        elif choice in ("none", "required"):
            mode = str(choice)
        include = req.stream_options is not None and req.stream_options.include_usage
        chars = sum(chars_of(m.content) for m in req.messages)
        limit = req.max_completion_tokens or req.max_tokens
        turns = talk.messages
        user = next((text_of(t.content) for t in reversed(turns) if t.role == "user"), "")
        after = bool(turns) and turns[-1].role in ("tool", "function")
        fmt = talk.response_format or _Format()
        schema = fmt.json_schema.schema if fmt.json_schema is not None else None
        output = fmt.type if fmt.type in ("json_object", "json_schema") else "text"
        return Ask(req.model, req.stream, include, chars, tools, mode, forced, limit, after, user, output, schema)

    def body(self, r: Reply) -> bytes:
        """A non-stream ``chat.completion``."""
        calls = [
            ToolCallOut(id=c.id, type="function", function=FunctionCallOut(name=c.name, arguments=c.arguments.decode()))
            for c in r.calls
        ]
        if calls:
            message = MessageOut(content=None, tool_calls=calls)
        else:
            message = MessageOut(content=reply_text(r) or None, refusal=r.refusal or None)
        choice = ChoiceOut(message=message, finish_reason=_oa_finish(r))
        completion = ChatCompletionOut(
            id=r.id, created=r.created, model=r.model, system_fingerprint=_FINGERPRINT, choices=[choice],
            usage=_oa_usage(r),
        )
        return ENCODER.encode(completion)

    def stream(self, r: Reply, include_usage: bool) -> StreamParts:
        """Chunks of a streamed completion, ending with ``data: [DONE]`` (or an error frame)."""
        # An error after the usage sends the usage chunk whether or not the request asked for it.
        include_usage = (include_usage and r.reports_usage) or bool(r.error_status)
        usage: UsageOut | UnsetType | None = None if include_usage else UNSET

        def encode(choices: list[ChunkChoiceOut], usage: UsageOut | UnsetType | None) -> bytes:
            out = ChatCompletionChunkOut(
                id=r.id, created=r.created, model=r.model, system_fingerprint=_FINGERPRINT, choices=choices, usage=usage
            )
            return sse(ENCODER.encode(out))

        def chunk(delta: DeltaOut, finish: str | None = None) -> bytes:
            return encode([ChunkChoiceOut(delta=delta, finish_reason=finish)], usage)

        head = chunk(DeltaOut(role="assistant", content=None if r.calls else ""))
        calls: list[bytes] = []
        for k, c in enumerate(r.calls):
            first, second = split_args(c.arguments)
            fn = FunctionCallOut(name=c.name, arguments="")
            opening = ToolCallOut(index=k, id=c.id, type="function", function=fn)
            calls.append(chunk(DeltaOut(tool_calls=[opening])))
            calls += [
                chunk(DeltaOut(tool_calls=[ToolCallOut(index=k, function=FunctionCallOut(arguments=part))]))
                for part in (first, second)
            ]
        template = StreamTemplate(chunk(DeltaOut(content=SENTINEL)))
        if r.error_status:
            error = self.error(r.error_status, "simulated error after usage")
            return StreamParts(head, template, (), encode([], _oa_usage(r)) + sse(error))
        half = len(r.refusal) // 2
        tail = b"".join(chunk(DeltaOut(refusal=p)) for p in (r.refusal[:half], r.refusal[half:]) if p)
        tail += chunk(DeltaOut(), _oa_finish(r))
        if include_usage:
            tail += encode([], _oa_usage(r))
        return StreamParts(head, template, tuple(calls), tail + b"data: [DONE]\n\n")

    def error(self, status: int, message: str) -> bytes:
        """An OpenAI error body for ``status``."""
        kind, code = _OA_ERRORS.get(status, ("server_error", None))
        return ENCODER.encode(ErrorOut(ErrorBody(message=message, type=kind, code=code)))


OPENAI = OpenAIWire()

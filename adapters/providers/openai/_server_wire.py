"""The OpenAI Chat Completions wire as a server sees it: what it reads, what it writes.

Our two OpenAI-compatible servers share these shapes: the gateway (``interlock.adapters.gateway``)
and the simulator (``interlock.adapters.simulator``). Together with ``_wire``, whose request parts
they reuse, this is the one model of the wire; names ending in ``In`` are read by a server, names
ending in ``Out`` are written by one.

Reading comes in two strictnesses, each with its decoder:

- ``REQUEST_DECODER`` (the gateway): a client's request, checked at the edge. Unknown fields are
  ignored (clients send many options a gateway has no use for), OpenAI's options that the
  canonical request cannot carry are read so that the gateway can refuse them by name when set
  (``logprobs``, ``n`` above 1...), every shape or range error names its JSON path, and a role
  or part the gateway cannot carry (``function``, ``input_audio``, ``file``) fails there. It
  reuses ``_wire``'s shapes where they read exactly as strictly; the request and the four ``In``
  shapes below it exist because ``_wire``'s encode-side counterparts would read more loosely
  (see the comment above them).
- ``REQUEST_VIEW_DECODER`` (the simulator): only what a fake server acts on, every member
  defaulted and any role taken, so that it answers whatever a client under test sends.

Writing: optional members are ``UNSET`` rather than ``None`` where OpenAI leaves them out, and
``None`` where it sends ``null``; members come in OpenAI's order. A server adds its own members by
subclassing (the gateway's ``interlock`` extension, ``interlock.adapters.gateway._wire``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.providers.openai._wire import (
    WireDeveloperMessage,
    WireFunctionName,
    WireJsonObjectFormat,
    WireJsonSchemaFormat,
    WireRefusalPart,
    WireStreamOptions,
    WireSystemMessage,
    WireTextFormat,
    WireTextPart,
    WireToolCall,
    WireToolMessage,
    WireUserMessage,
)

ToolName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TokenLimit = Annotated[int, msgspec.Meta(ge=1)]


# -- request, read by the gateway ---------------------------------------------------------------
# These shapes differ from their ``_wire`` counterparts in what they refuse, and the gateway's edge
# must go on refusing it: ``_wire``'s shapes are built for our client to write, so a member it
# leaves out is None (null would be read for ``tool_calls``, ``description`` and ``stream``), and
# a ``type`` there is a msgspec tag, which a Struct outside a tagged union reads as optional (a
# tool or a named tool choice without ``type`` would be read). Here those members are required,
# or have a default that is not None.


class AssistantMessageIn(msgspec.Struct, frozen=True, tag="assistant", tag_field="role"):
    """An earlier assistant turn: text and/or tool calls."""

    content: str | list[WireTextPart | WireRefusalPart] | None = None
    tool_calls: list[WireToolCall] = []
    refusal: str | None = None
    name: str | None = None


MessageIn = WireSystemMessage | WireDeveloperMessage | WireUserMessage | AssistantMessageIn | WireToolMessage


class FunctionDefIn(msgspec.Struct, frozen=True):
    """A function tool: name, description and JSON Schema of its parameters."""

    name: ToolName
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(msgspec.Struct, frozen=True):
    """``{"type": "function", "function": {...}}``."""

    type: Literal["function"]
    function: FunctionDefIn


class NamedToolChoiceIn(msgspec.Struct, frozen=True):
    """``{"type": "function", "function": {"name": ...}}``: call this tool."""

    type: Literal["function"]
    function: WireFunctionName


class ChatCompletionRequest(msgspec.Struct, frozen=True):
    """The body of ``POST /v1/chat/completions``; ``model`` names a job or a model."""

    model: str
    messages: Annotated[list[MessageIn], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: WireStreamOptions | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    response_format: WireTextFormat | WireJsonObjectFormat | WireJsonSchemaFormat | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    # Read only to be refused when set (``unsupported_parameter``, in the gateway's ``_requests``):
    # the canonical request cannot carry them, and answering without them would be silently wrong.
    logprobs: bool | None = None
    top_logprobs: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    functions: Any = None
    function_call: Any = None
    web_search_options: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None


REQUEST_DECODER = msgspec.json.Decoder(ChatCompletionRequest)


# -- request, as the simulator views it ---------------------------------------------------------


class PartView(msgspec.Struct, frozen=True):
    """A content part of any type; only its text counts."""

    text: str = ""


class MessageView(msgspec.Struct, frozen=True):
    """A message of any role; only its content counts."""

    content: str | list[PartView] | None = None


class FunctionView(msgspec.Struct, frozen=True):
    """A tool's function: its name and the schema of its arguments."""

    name: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolView(msgspec.Struct, frozen=True):
    """A tool; one without a ``function`` is skipped."""

    function: FunctionView | None = None


class ToolChoiceView(msgspec.Struct, frozen=True):
    """A named tool choice; the ``type`` is not checked."""

    function: WireFunctionName | None = None


class RequestView(msgspec.Struct, frozen=True):
    """What a fake server acts on: the model, streaming, tools and limits, and the prompt's size."""

    model: str
    messages: list[MessageView] = []
    stream: bool = False
    stream_options: WireStreamOptions | None = None
    tools: list[ToolView] = []
    tool_choice: str | ToolChoiceView | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


REQUEST_VIEW_DECODER = msgspec.json.Decoder(RequestView)


# -- answers, written ---------------------------------------------------------------------------


class PromptDetailsOut(msgspec.Struct, frozen=True):
    """How many prompt tokens were read from the provider's prompt cache."""

    cached_tokens: int = 0


class UsageOut(msgspec.Struct, frozen=True):
    """Token usage; ``prompt_tokens`` counts cached prompt tokens too."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetailsOut = PromptDetailsOut()


class FunctionCallOut(msgspec.Struct, frozen=True, kw_only=True):
    """``function`` of a tool call: whole, or a streamed fragment (the name only in the first)."""

    name: str | UnsetType = UNSET
    arguments: str


class ToolCallOut(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call; in a stream ``index`` orders fragments and only a call's first has id and type."""

    index: int | UnsetType = UNSET
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: FunctionCallOut


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant's message; ``reasoning_content`` is the common extension for reasoning text."""

    role: str = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET


class ChoiceOut(msgspec.Struct, frozen=True, kw_only=True):
    """The one choice of a completion."""

    index: int = 0
    message: MessageOut
    logprobs: None = None
    finish_reason: str


class ChatCompletionOut(msgspec.Struct, frozen=True, kw_only=True):
    """A non-streamed answer (``object = "chat.completion"``)."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | UnsetType = UNSET
    choices: list[ChoiceOut]
    usage: UsageOut | None  # null: the provider reported none (unknown, never zeros)


class DeltaOut(msgspec.Struct, frozen=True, kw_only=True):
    """What a chunk adds to the message; the first chunk of a stream carries the role."""

    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    refusal: str | UnsetType | None = UNSET
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCallOut] | UnsetType = UNSET


class ChunkChoiceOut(msgspec.Struct, frozen=True, kw_only=True):
    """The one choice of a chunk; ``finish_reason`` is null until the last content chunk."""

    index: int = 0
    delta: DeltaOut
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunkOut(msgspec.Struct, frozen=True, kw_only=True):
    """One SSE ``data:`` chunk of a streamed answer; the usage chunk has no choices.

    ``usage`` is null in every chunk but the usage chunk (sent when the stream asked for usage).
    """

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | UnsetType = UNSET
    choices: list[ChunkChoiceOut]
    usage: UsageOut | UnsetType | None = UNSET


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's error object: ``param`` names the offending request field, ``code`` the reason."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorOut(msgspec.Struct, frozen=True):
    """``{"error": {...}}``: the body of every error response and of a stream's error event."""

    error: ErrorBody


class ModelOut(msgspec.Struct, frozen=True):
    """One entry of ``GET /v1/models``."""

    id: str
    owned_by: str
    created: int = 0
    object: str = "model"


class ModelListOut(msgspec.Struct, frozen=True):
    """``GET /v1/models``."""

    data: list[ModelOut]
    object: str = "list"


ENCODER = msgspec.json.Encoder()

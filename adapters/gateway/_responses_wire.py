"""The OpenAI Responses API wire as the gateway sees it: the request it reads, the objects it writes.

Reading: ``ResponsesRequest`` is decoded once at the edge. ``input`` items and ``tools`` are kept
as raw JSON there and decoded one by one (``ITEM_DECODERS``, ``FUNCTION_TOOL``), because a
message item may leave out its ``type`` (the SDK's "easy" message), which no tagged union
admits, and because a tool or item of a kind interlock does not serve must be refused by name
(``tools[0].type``), not as a decoding error. Options the canonical request cannot carry are read
only so that the gateway can refuse them by name when set (``background``, ``include``...).
Unknown members are ignored, as the chat dialect does.

Writing: a ``ResponseOut`` (the non-streamed body, ``GET``'s, and the ``response`` of the
lifecycle stream events, which live in ``_responses_events``), its output items and content parts,
each tagged with its ``type`` so that it comes first. Members are in the order OpenAI writes them;
``interlock`` (how the answer was served) comes last, once the route is known.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.gateway._wire import RouteOut
from interlock.adapters.providers.openai._server_wire import Temperature, TokenLimit, ToolName, TopP

# -- request --------------------------------------------------------------------------------------


class InputTextIn(msgspec.Struct, frozen=True, tag="input_text", tag_field="type"):
    """A text part of an input message."""

    text: str


class InputImageIn(msgspec.Struct, frozen=True, tag="input_image", tag_field="type"):
    """An image part, by URL or data URL (``file_id`` is refused: interlock keeps no files)."""

    image_url: str | None = None
    file_id: str | None = None
    detail: str = "auto"


class OutputTextIn(msgspec.Struct, frozen=True, tag="output_text", tag_field="type"):
    """A text part of an earlier assistant message, sent back as input."""

    text: str


class RefusalIn(msgspec.Struct, frozen=True, tag="refusal", tag_field="type"):
    """A refusal part of an earlier assistant message, sent back as input."""

    refusal: str


ContentIn = InputTextIn | InputImageIn | OutputTextIn | RefusalIn


class MessageItemIn(msgspec.Struct, frozen=True, kw_only=True):
    """A message item: ``type`` ``message`` (or left out), a role, text or parts."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentIn]
    type: Literal["message"] = "message"


class FunctionCallIn(msgspec.Struct, frozen=True, kw_only=True):
    """A call the model made earlier (an output item sent back as input)."""

    call_id: str
    name: str
    arguments: str
    type: Literal["function_call"] = "function_call"


class FunctionCallOutputIn(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a call, for the model: text, or text parts."""

    call_id: str
    output: str | list[ContentIn]
    type: Literal["function_call_output"] = "function_call_output"


class ItemHead(msgspec.Struct, frozen=True):
    """What an input item or tool is, read before the item itself."""

    type: str = "message"


ITEM_HEAD = msgspec.json.Decoder(ItemHead)
ITEM_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "message": msgspec.json.Decoder(MessageItemIn),
    "function_call": msgspec.json.Decoder(FunctionCallIn),
    "function_call_output": msgspec.json.Decoder(FunctionCallOutputIn),
}
# Reasoning an earlier answer carried: the canonical messages have no place for it, and a model
# reasons afresh on each turn, so it is read and dropped (clients replay whole outputs as input).
DROPPED_ITEMS = frozenset({"reasoning"})


class FunctionToolIn(msgspec.Struct, frozen=True, kw_only=True, tag="function", tag_field="type"):
    """A function tool, flat as the Responses API writes it (no ``function`` wrapper)."""

    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


FUNCTION_TOOL = msgspec.json.Decoder(FunctionToolIn)


class ToolChoiceIn(msgspec.Struct, frozen=True):
    """An object ``tool_choice``: ``{"type": "function", "name": ...}`` is the one served."""

    type: str
    name: str | None = None


class TextFormatIn(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    """Free text."""


class JsonObjectIn(msgspec.Struct, frozen=True, tag="json_object", tag_field="type"):
    """Any JSON object."""


class JsonSchemaIn(msgspec.Struct, frozen=True, kw_only=True, tag="json_schema", tag_field="type"):
    """JSON matching ``schema``; flat, unlike chat's ``json_schema`` wrapper."""

    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


FormatIn = TextFormatIn | JsonObjectIn | JsonSchemaIn


class TextConfigIn(msgspec.Struct, frozen=True):
    """``text``: the output format (``verbosity`` is refused when set)."""

    format: FormatIn | None = None
    verbosity: str | None = None


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``POST /v1/responses``; ``model`` names a job or a model."""

    model: str
    input: str | list[msgspec.Raw] = []
    instructions: str | None = None
    tools: list[msgspec.Raw] = []
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfigIn | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_output_tokens: TokenLimit | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool = False
    # Read only to be refused when set: the canonical request cannot carry them.
    background: bool | None = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    prompt: Any = None
    conversation: Any = None
    truncation: str | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    service_tier: str | None = None
    context_management: Any = None


REQUEST_DECODER = msgspec.json.Decoder(ResponsesRequest)


# -- response -------------------------------------------------------------------------------------


class OutputTextOut(msgspec.Struct, frozen=True, kw_only=True, tag="output_text", tag_field="type"):
    """Text the model wrote."""

    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class RefusalOut(msgspec.Struct, frozen=True, kw_only=True, tag="refusal", tag_field="type"):
    """The model's refusal, kept apart from its text."""

    refusal: str


class ReasoningTextOut(msgspec.Struct, frozen=True, kw_only=True, tag="reasoning_text", tag_field="type"):
    """The model's reasoning, where the serving model shows it."""

    text: str


ContentOut = OutputTextOut | RefusalOut


class MessageOut(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="type"):
    """An assistant message output item."""

    id: str
    status: str
    role: str = "assistant"
    content: list[ContentOut]


class FunctionCallOut(msgspec.Struct, frozen=True, kw_only=True, tag="function_call", tag_field="type"):
    """A function call output item; the client answers it with a ``function_call_output``."""

    id: str
    call_id: str
    name: str
    arguments: str
    status: str


class ReasoningOut(msgspec.Struct, frozen=True, kw_only=True, tag="reasoning", tag_field="type"):
    """A reasoning output item (no summary: the model's own reasoning text, when it has any)."""

    id: str
    summary: list[Any] = []
    content: list[ReasoningTextOut] = []
    status: str = "completed"


ItemOut = MessageOut | FunctionCallOut | ReasoningOut


class FunctionToolOut(msgspec.Struct, frozen=True, kw_only=True, tag="function", tag_field="type"):
    """A function tool as the response echoes it."""

    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class ToolChoiceFunctionOut(msgspec.Struct, frozen=True, kw_only=True, tag="function", tag_field="type"):
    """A forced function, as the response echoes its ``tool_choice``."""

    name: str


class TextConfigOut(msgspec.Struct, frozen=True):
    """``text`` as the response echoes it."""

    format: FormatIn


class InputDetailsOut(msgspec.Struct, frozen=True):
    """Cached input tokens (read and written), included in ``input_tokens``."""

    cached_tokens: int
    cache_write_tokens: int


class OutputDetailsOut(msgspec.Struct, frozen=True):
    """Reasoning tokens: interlock's usage does not count them apart, so 0."""

    reasoning_tokens: int = 0


class UsageOut(msgspec.Struct, frozen=True, kw_only=True):
    """The Responses API's usage: every input token, cached or not, is in ``input_tokens``."""

    input_tokens: int
    input_tokens_details: InputDetailsOut
    output_tokens: int
    output_tokens_details: OutputDetailsOut = OutputDetailsOut()
    total_tokens: int


class ResponseErrorOut(msgspec.Struct, frozen=True):
    """Why a response failed (``response.error``)."""

    code: str
    message: str


class IncompleteOut(msgspec.Struct, frozen=True):
    """Why a response ended before it was done (``max_output_tokens``, ``content_filter``)."""

    reason: str


class ResponseOut(msgspec.Struct, frozen=True, kw_only=True):
    """A response object: the non-streamed body, ``GET /v1/responses/{id}`` and the lifecycle events."""

    id: str
    object: str = "response"
    created_at: int
    status: str
    background: bool = False
    error: ResponseErrorOut | None = None
    incomplete_details: IncompleteOut | None = None
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    model: str
    output: list[ItemOut]
    parallel_tool_calls: bool
    previous_response_id: str | None
    store: bool
    temperature: float | None
    text: TextConfigOut
    tool_choice: str | ToolChoiceFunctionOut
    tools: list[FunctionToolOut]
    top_p: float | None
    truncation: str = "disabled"
    usage: UsageOut | None = None
    user: str | None = None
    interlock: RouteOut | UnsetType = UNSET

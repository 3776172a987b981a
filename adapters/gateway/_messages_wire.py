"""The Anthropic Messages wire as the gateway serves it: requests it reads, messages and events it writes.

Names ending in ``In`` are read from a client, names ending in ``Out`` are written to one; field
names and shapes follow Anthropic's ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Reading: unknown members are ignored (clients send options a gateway has no use for), content
blocks are a union tagged by ``type``, so a block the canonical types cannot carry (``document``,
``search_result``, a server tool's result) fails the decode with its JSON path, which the edge
turns into a 400 naming the field. Options interlock cannot honour are read as ``msgspec.Raw``
(empty means absent) only so that the endpoint can refuse them by name when they are sent.

Writing: optional members are ``None`` where Anthropic sends ``null``; members come in Anthropic's
order. Usage the provider did not report is ``null``, never zeros. The final message (and a
stream's ``message_delta``) carries one member of interlock's own last, ``interlock``: how the
answer was served, as on the gateway's chat answers (clients ignore members they do not know).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.gateway._wire import RouteOut

Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TopP = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TokenLimit = Annotated[int, msgspec.Meta(ge=1)]
_ABSENT = msgspec.Raw()

# -- request ------------------------------------------------------------------------------------


class CacheControlIn(msgspec.Struct, frozen=True):
    """A prompt-cache breakpoint on a block, a tool or the request (``ttl`` is read and left to the provider)."""

    type: Literal["ephemeral"] = "ephemeral"
    ttl: str | None = None


class TextIn(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    """A text block (also each element of a ``system`` list); ``citations`` are read and dropped."""

    text: str
    cache_control: CacheControlIn | None = None


class Base64SourceIn(msgspec.Struct, frozen=True, tag_field="type", tag="base64"):
    """Inline image bytes and their media type."""

    media_type: str
    data: str


class UrlSourceIn(msgspec.Struct, frozen=True, tag_field="type", tag="url"):
    """An image the provider fetches itself."""

    url: str


class ImageIn(msgspec.Struct, frozen=True, tag_field="type", tag="image"):
    """An image block."""

    source: Base64SourceIn | UrlSourceIn
    cache_control: CacheControlIn | None = None


class ToolUseIn(msgspec.Struct, frozen=True, tag_field="type", tag="tool_use"):
    """A tool call an earlier assistant turn made; ``input`` is kept as its JSON text."""

    id: str
    name: str
    input: msgspec.Raw
    cache_control: CacheControlIn | None = None


class ToolResultIn(msgspec.Struct, frozen=True, tag_field="type", tag="tool_result"):
    """A tool call's result, in a user turn: a text, or text (and image) blocks."""

    tool_use_id: str
    content: str | list[TextIn | ImageIn] = ""
    is_error: bool = False
    cache_control: CacheControlIn | None = None


class ThinkingIn(msgspec.Struct, frozen=True, tag_field="type", tag="thinking"):
    """An earlier turn's reasoning, sent back by the client."""

    thinking: str
    signature: str = ""


class RedactedThinkingIn(msgspec.Struct, frozen=True, tag_field="type", tag="redacted_thinking"):
    """An earlier turn's encrypted reasoning, sent back by the client."""

    data: str


BlockIn = TextIn | ImageIn | ToolUseIn | ToolResultIn | ThinkingIn | RedactedThinkingIn


class MessageIn(msgspec.Struct, frozen=True):
    """One turn: Anthropic has user and assistant roles only; a string content is one text block."""

    role: Literal["user", "assistant"]
    content: str | list[BlockIn]


class ToolIn(msgspec.Struct, frozen=True):
    """A tool as sent: a custom tool (``type`` absent or ``custom``) or a server tool (refused by type)."""

    name: str
    type: str | None = None
    description: str = ""
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControlIn | None = None


class ToolChoiceIn(msgspec.Struct, frozen=True):
    """``auto``, ``any`` (some tool), ``tool`` (the named one) or ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfigIn(msgspec.Struct, frozen=True):
    """Extended thinking: ``enabled`` with a ``budget_tokens`` (``ChatRequest.reasoning``), or ``disabled``."""

    type: str
    budget_tokens: int | None = None


class MetadataIn(msgspec.Struct, frozen=True):
    """Request metadata: ``user_id`` names the end user, as OpenAI's ``user`` does."""

    user_id: str | None = None


class JsonSchemaOutputIn(msgspec.Struct, frozen=True, tag_field="type", tag="json_schema"):
    """Structured output: the answer is JSON matching ``schema``."""

    schema: dict[str, Any]


class OutputConfigIn(msgspec.Struct, frozen=True):
    """``output_config``: the answer's format; ``effort`` is read to be refused when set."""

    format: JsonSchemaOutputIn | None = None
    effort: str | None = None


class CountTokensIn(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``POST /v1/messages/count_tokens``: the prompt part of a Messages request."""

    model: str
    messages: list[MessageIn]
    system: str | list[TextIn] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    thinking: ThinkingConfigIn | None = None
    output_config: OutputConfigIn | None = None
    cache_control: CacheControlIn | None = None


class MessagesIn(CountTokensIn, frozen=True, kw_only=True):
    """The body of ``POST /v1/messages``; ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: TokenLimit
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    metadata: MetadataIn | None = None
    # Read only to be refused by name when sent (``_messages._UNSUPPORTED``).
    top_k: msgspec.Raw = _ABSENT
    container: msgspec.Raw = _ABSENT
    mcp_servers: msgspec.Raw = _ABSENT
    context_management: msgspec.Raw = _ABSENT
    inference_geo: msgspec.Raw = _ABSENT
    service_tier: str | None = None
    speed: str | None = None


# -- answers ------------------------------------------------------------------------------------


class TextOut(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    """A text block of the answer."""

    text: str


class ThinkingOut(msgspec.Struct, frozen=True, tag_field="type", tag="thinking"):
    """The serving model's reasoning, with the signature that closes it (``""`` when it gave none)."""

    thinking: str
    signature: str = ""


class ToolUseOut(msgspec.Struct, frozen=True, tag_field="type", tag="tool_use"):
    """A tool call of the answer; ``input`` is its arguments' JSON (``{}`` in a stream's start event)."""

    id: str
    name: str
    input: msgspec.Raw


BlockOut = TextOut | ThinkingOut | ToolUseOut


class UsageOut(msgspec.Struct, frozen=True):
    """Token counts; ``null`` when the provider reported none (unknown is never zero)."""

    input_tokens: int | None
    output_tokens: int | None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """A Message object: the whole non-streamed answer, or the shell in ``message_start``."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[BlockOut]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: UsageOut
    interlock: RouteOut | UnsetType = UNSET  # how it was served, as on the gateway's chat answers


class TokenCountOut(msgspec.Struct, frozen=True):
    """The answer of ``count_tokens``."""

    input_tokens: int


# -- stream events ------------------------------------------------------------------------------


class MessageStartOut(msgspec.Struct, frozen=True, tag_field="type", tag="message_start"):
    """The first event: the message shell, its content empty and its stop reason null."""

    message: MessageOut


class PingOut(msgspec.Struct, frozen=True, tag_field="type", tag="ping"):
    """A keep-alive event, sent once after ``message_start`` as Anthropic does."""


class BlockStartOut(msgspec.Struct, frozen=True, tag_field="type", tag="content_block_start"):
    """A content block opens at ``index``."""

    index: int
    content_block: BlockOut


class TextDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="text_delta"):
    """More text of a text block."""

    text: str


class JsonDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="input_json_delta"):
    """More of a tool_use block's arguments, as JSON text."""

    partial_json: str


class ThinkingDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="thinking_delta"):
    """More of a thinking block's reasoning."""

    thinking: str


class SignatureDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="signature_delta"):
    """The signature that closes a thinking block."""

    signature: str


DeltaOut = TextDeltaOut | JsonDeltaOut | ThinkingDeltaOut | SignatureDeltaOut


class BlockDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="content_block_delta"):
    """A delta to the block at ``index``."""

    index: int
    delta: DeltaOut


class BlockStopOut(msgspec.Struct, frozen=True, tag_field="type", tag="content_block_stop"):
    """The block at ``index`` is complete."""

    index: int


class StopOut(msgspec.Struct, frozen=True):
    """A ``message_delta``'s delta: why the answer ended."""

    stop_reason: str
    stop_sequence: str | None = None


class MessageDeltaOut(msgspec.Struct, frozen=True, tag_field="type", tag="message_delta"):
    """The stop reason and the final (cumulative) usage, with how the answer was served."""

    delta: StopOut
    usage: UsageOut
    interlock: RouteOut | UnsetType = UNSET


class MessageStopOut(msgspec.Struct, frozen=True, tag_field="type", tag="message_stop"):
    """The last event of a stream that succeeded."""


# -- errors -------------------------------------------------------------------------------------


class ErrorDetailsOut(msgspec.Struct, frozen=True):
    """``details.error_code``: interlock's code for the error (``budget_exceeded``, ``model_not_found``...)."""

    error_code: str


class ErrorBodyOut(msgspec.Struct, frozen=True, kw_only=True):
    """Anthropic's error object: its ``type`` (``rate_limit_error``...) and a message naming the field."""

    type: str
    message: str
    details: ErrorDetailsOut | None = None


class ErrorOut(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """``{"type": "error", "error": {...}, "request_id": ...}``: an error response, or a stream's error event."""

    error: ErrorBodyOut
    request_id: str | None = None


REQUEST_DECODER = msgspec.json.Decoder(MessagesIn)
COUNT_DECODER = msgspec.json.Decoder(CountTokensIn)
ENCODER = msgspec.json.Encoder()

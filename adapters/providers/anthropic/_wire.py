"""Anthropic Messages API wire types: the request body we send and the JSON we read back.

Request Structs mirror ``POST /v1/messages`` (content blocks tagged by ``type``; ``omit_defaults``
keeps unset optional fields off the wire). Response Structs are deliberately loose: one envelope
per stream event and one per content block, every field optional, so an event or block type
Anthropic adds later decodes cleanly and is skipped by the codec instead of breaking the stream.
The wire's vocabulary (stop reasons, error types, error statuses) is tabled here, once, as
canonical finish reasons and error classes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from interlock._errors import ErrorClass
from interlock._types import FinishReason

# -- request ---------------------------------------------------------------------------------


class CacheControl(msgspec.Struct, frozen=True):
    """A prompt-cache breakpoint: the prefix up to and including this block is cached."""

    type: Literal["ephemeral"] = "ephemeral"


EPHEMERAL = CacheControl()


class TextBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="text"):
    """A text content block (also the element type of the top-level ``system`` list)."""

    text: str
    cache_control: CacheControl | None = None


class Base64Source(msgspec.Struct, frozen=True, tag_field="type", tag="base64"):
    """Inline image bytes, base64-encoded, with their media type."""

    media_type: str
    data: str


class UrlSource(msgspec.Struct, frozen=True, tag_field="type", tag="url"):
    """An image Anthropic fetches itself."""

    url: str


class ImageBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="image"):
    """An image content block (user turns only)."""

    source: Base64Source | UrlSource
    cache_control: CacheControl | None = None


class ToolUseBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="tool_use"):
    """A tool call made by the assistant; ``input`` is the raw JSON object of its arguments."""

    id: str
    name: str
    input: msgspec.Raw
    cache_control: CacheControl | None = None


class ToolResultBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="tool_result"):
    """The result of a tool call, sent inside a user turn."""

    tool_use_id: str
    content: str
    is_error: bool = False
    cache_control: CacheControl | None = None


ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class WireMessage(msgspec.Struct, frozen=True):
    """One conversation turn; Anthropic has only user and assistant roles."""

    role: Literal["user", "assistant"]
    content: tuple[ContentBlock, ...]


class WireTool(msgspec.Struct, frozen=True, omit_defaults=True):
    """A client tool; ``input_schema`` is the JSON Schema of its arguments."""

    name: str
    input_schema: dict[str, Any]
    description: str = ""
    cache_control: CacheControl | None = None


class WireToolChoice(msgspec.Struct, frozen=True, omit_defaults=True):
    """``auto``, ``any`` (some tool), ``tool`` (the named one) or ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class JsonSchemaOutput(msgspec.Struct, frozen=True, tag_field="type", tag="json_schema"):
    """Structured output: the answer text must be JSON matching ``schema``."""

    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ``output_config`` object (GA home of structured outputs, formerly beta ``output_format``)."""

    format: JsonSchemaOutput | None = None


class ThinkingConfig(msgspec.Struct, frozen=True):
    """Extended thinking: ``{"type": "enabled", "budget_tokens": N}`` (N >= 1024, below ``max_tokens``)."""

    budget_tokens: int
    type: str = "enabled"


class MessagesRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """The body of ``POST /v1/messages``."""

    model: str
    max_tokens: int
    messages: tuple[WireMessage, ...]
    system: tuple[TextBlock, ...] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: tuple[str, ...] | None = None
    tools: tuple[WireTool, ...] | None = None
    tool_choice: WireToolChoice | None = None
    output_config: OutputConfig | None = None
    thinking: ThinkingConfig | None = None
    stream: bool | None = None


# -- response --------------------------------------------------------------------------------


class WireUsage(msgspec.Struct, frozen=True):
    """Token counts; absent fields stay None so a ``message_delta`` only overrides what it sends."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def updated(self, new: WireUsage) -> WireUsage:
        """These counts, overridden by every count ``new`` carries (message_delta's are cumulative)."""
        pairs = zip(msgspec.structs.astuple(self), msgspec.structs.astuple(new), strict=True)
        return WireUsage(*(old if fresh is None else fresh for old, fresh in pairs))


class WireBlock(msgspec.Struct, frozen=True):
    """Any response content block (text, thinking, tool_use, or a type we skip)."""

    type: str
    text: str = ""
    thinking: str = ""
    signature: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()  # msgspec cannot put Raw in a union: empty means absent


class WireResponse(msgspec.Struct, frozen=True):
    """A Message object: the whole non-streamed answer, or the shell in ``message_start``.

    ``model`` is the model id that answered; ``usage`` is None when the body carried none.
    """

    type: str = "message"
    model: str = ""
    content: tuple[WireBlock, ...] = ()
    stop_reason: str | None = None
    usage: WireUsage | None = None


class WireDelta(msgspec.Struct, frozen=True):
    """The ``delta`` of a content_block_delta (text, JSON, thinking, signature) or a message_delta."""

    type: str = ""
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""
    stop_reason: str | None = None


class WireErrorDetails(msgspec.Struct, frozen=True):
    """An error's ``details``: ``error_code`` narrows the type (``enforced_spend_limit_reached``)."""

    error_code: str = ""


class WireErrorBody(msgspec.Struct, frozen=True):
    """The ``error`` object of an error response or an in-band ``error`` event."""

    type: str = ""
    message: str = ""
    details: WireErrorDetails | None = None

    @property
    def error_code(self) -> str:
        """``details.error_code``, or empty when the error has none."""
        return self.details.error_code if self.details is not None else ""


class WireErrorResponse(msgspec.Struct, frozen=True):
    """An HTTP error body: ``{"type": "error", "error": {...}, "request_id": ...}``."""

    error: WireErrorBody = WireErrorBody()
    request_id: str | None = None


class WireEvent(msgspec.Struct, frozen=True):
    """One stream event's data; which fields are set depends on ``type``."""

    type: str
    index: int = 0
    message: WireResponse | None = None
    content_block: WireBlock | None = None
    delta: WireDelta | None = None
    usage: WireUsage | None = None
    error: WireErrorBody | None = None


# -- vocabulary ------------------------------------------------------------------------------

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused the turn; the answer so far is complete
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# One table for HTTP error bodies and in-band stream errors alike; STATUS_KINDS only decides
# when the body carries no error type we know (a proxy's HTML page, an empty 503).
ERROR_TYPES: dict[str, ErrorClass] = {
    "invalid_request_error": ErrorClass.BAD_REQUEST,
    "authentication_error": ErrorClass.AUTH,
    "permission_error": ErrorClass.AUTH,
    "billing_error": ErrorClass.QUOTA,  # 402: billing or payment trouble; the account cannot pay
    "not_found_error": ErrorClass.BAD_REQUEST,
    "request_too_large": ErrorClass.BAD_REQUEST,
    "rate_limit_error": ErrorClass.RATE_LIMIT,
    "api_error": ErrorClass.SERVER_ERROR,
    "overloaded_error": ErrorClass.OVERLOADED,
    "timeout_error": ErrorClass.TIMEOUT,
}
STATUS_KINDS: dict[int, ErrorClass] = {
    400: ErrorClass.BAD_REQUEST,
    401: ErrorClass.AUTH,
    402: ErrorClass.QUOTA,  # documented as billing_error
    403: ErrorClass.AUTH,
    404: ErrorClass.BAD_REQUEST,
    413: ErrorClass.BAD_REQUEST,
    429: ErrorClass.RATE_LIMIT,
    500: ErrorClass.SERVER_ERROR,
    502: ErrorClass.SERVER_ERROR,
    503: ErrorClass.OVERLOADED,
    504: ErrorClass.TIMEOUT,
    529: ErrorClass.OVERLOADED,
}

REQUEST_ENCODER = msgspec.json.Encoder()
EVENT_DECODER = msgspec.json.Decoder(WireEvent)
RESPONSE_DECODER = msgspec.json.Decoder(WireResponse)
ERROR_DECODER = msgspec.json.Decoder(WireErrorResponse)
